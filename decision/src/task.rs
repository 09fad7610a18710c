//! The task type of an OpenClaw run, for cost by task type: what started the run, read from
//! its session key (`agent:<id>:main`, `agent:<id>:cron:<job>...`, `...:subagent:...`) and,
//! when the caller knows them, the run's heartbeat flag (`isHeartbeat` on the gateway's
//! `agent` events) or its trigger (`ctx.trigger` of the plugin's `before_agent_run`:
//! `user`, `heartbeat`, `cron`, `memory`, `manual`, `overflow`). One place decides it so the
//! data path (which stamps it on a record) and the cost aggregates (which read it back)
//! never disagree.

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskType {
    Interactive,
    Heartbeat,
    Subagent,
    Cron,
}

impl TaskType {
    /// Every task type, in display order.
    pub const ALL: [TaskType; 4] = [TaskType::Interactive, TaskType::Heartbeat, TaskType::Subagent, TaskType::Cron];

    /// Stored name (`details.task_type`, the cost dimension `task`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Interactive => "interactive",
            TaskType::Heartbeat => "heartbeat",
            TaskType::Subagent => "subagent",
            TaskType::Cron => "cron",
        }
    }

    /// The stored name back; None for anything else (`unknown` included).
    pub fn parse(s: &str) -> Option<TaskType> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// From an OpenClaw session key alone; None when `key` is not one (a bare session id).
    /// A key naming `heartbeat` is a heartbeat session (OpenClaw's `heartbeat.session`).
    pub fn from_session_key(key: &str) -> Option<TaskType> {
        if !key.starts_with("agent:") {
            return None;
        }
        Some(if key.contains(":cron:") {
            TaskType::Cron
        } else if key.contains(":subagent:") {
            TaskType::Subagent
        } else if key.contains("heartbeat") {
            TaskType::Heartbeat
        } else {
            TaskType::Interactive
        })
    }

    /// A run's task type from its session key and what its source says of it. The run's own
    /// flags win over the key: a heartbeat runs in the agent's main session by default
    /// (`agent:<id>:main`), which the key alone would call interactive. A trigger of
    /// `cron` outranks a sub-agent key only when the key is not a sub-agent's (a cron run
    /// that spawns a sub-agent: the sub-agent's own run says `subagent`). None when the key is
    /// not a session key and nothing else says.
    pub fn of_run(session_key: &str, heartbeat: bool, trigger: Option<&str>) -> Option<TaskType> {
        let from_key = TaskType::from_session_key(session_key);
        if heartbeat || trigger == Some("heartbeat") {
            return Some(TaskType::Heartbeat);
        }
        match (trigger, from_key) {
            (_, Some(TaskType::Subagent)) => Some(TaskType::Subagent),
            (Some("cron"), _) => Some(TaskType::Cron),
            (_, k) => k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TaskType::{self, *};

    #[test]
    fn session_keys() {
        assert_eq!(TaskType::from_session_key("agent:main:main"), Some(Interactive));
        assert_eq!(TaskType::from_session_key("agent:main:cron:job-1:run:abc"), Some(Cron));
        assert_eq!(TaskType::from_session_key("agent:main:subagent:7f"), Some(Subagent));
        assert_eq!(TaskType::from_session_key("agent:main:heartbeat"), Some(Heartbeat));
        assert_eq!(TaskType::from_session_key("agent:ops:telegram:direct:42"), Some(Interactive));
        assert_eq!(TaskType::from_session_key("0b8e5a1c-uuid"), None);
        assert_eq!(TaskType::from_session_key(""), None);
    }

    #[test]
    fn run_flags_win_over_the_key() {
        assert_eq!(TaskType::of_run("agent:main:main", true, None), Some(Heartbeat));
        assert_eq!(TaskType::of_run("agent:main:main", false, Some("heartbeat")), Some(Heartbeat));
        assert_eq!(TaskType::of_run("agent:main:main", false, Some("user")), Some(Interactive));
        assert_eq!(TaskType::of_run("agent:main:main", false, Some("cron")), Some(Cron));
        assert_eq!(TaskType::of_run("agent:main:subagent:1", false, Some("cron")), Some(Subagent));
        assert_eq!(TaskType::of_run("not-a-key", false, None), None);
        assert_eq!(TaskType::of_run("not-a-key", false, Some("cron")), Some(Cron));
        for t in TaskType::ALL {
            assert_eq!(TaskType::parse(t.as_str()), Some(t));
        }
        assert_eq!(TaskType::parse("unknown"), None);
    }
}
