//! What the budgets will say about a call, asked before it is held for a human: a human must
//! only be asked about calls that will go ahead if approved. Certain refusals (an open
//! breaker, an unpriced model under a budget, a worst case above a budget's whole limit) are
//! answered at once; refusals that depend on what is spent meanwhile become cautions shown on
//! the approval ("budget may refuse: 92 % used"). Nothing is reserved here: the reserve step
//! after the hold still decides, all or nothing.

use super::{usd, Budgets, CallScope, Refusal};

/// A budget that may refuse the call once it is approved.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCaution {
    pub budget_id: String,
    pub scope: String,
    /// Spend over limit, in percent.
    pub used_pct: f64,
    pub spent_usd: f64,
    /// Held by calls in flight.
    pub reserved_usd: f64,
    pub limit_usd: f64,
    /// The call's worst case.
    pub needed_usd: f64,
}

/// See [`Budgets::outlook`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outlook {
    /// No budget applies, or every one has room and is below its warning level.
    Clear,
    /// Budgets apply and the model has no price: the reserve step would refuse it.
    Unpriced,
    /// Certain to be refused: an open breaker, or a worst case above a whole limit.
    Refused(Refusal),
    /// May be refused later (little room left now, or past the warning level).
    MayRefuse(Vec<BudgetCaution>),
}

impl Budgets {
    /// The budgets' outlook for a call whose worst case is `worst_usd` (None = unpriced).
    pub fn outlook(&self, call: &CallScope<'_>, worst_usd: Option<f64>) -> Outlook {
        let bs = self.applicable(call);
        if bs.is_empty() {
            return Outlook::Clear;
        }
        let Some(worst) = worst_usd else { return Outlook::Unpriced };
        let amount = super::to_nanos(worst);
        let mut cautions = Vec::new();
        for b in &bs {
            let verdict = self.with_state(b, |st| {
                if st.open {
                    return Err(self.refusal(b, st, None));
                }
                if amount > b.limit {
                    // Not even an empty window could take it: no reset makes it fit.
                    return Err(self.refusal(b, st, Some(amount)));
                }
                let tight = st.spent.saturating_add(st.reserved).saturating_add(amount) > b.limit;
                let warned = b.warn_at > 0.0 && st.spent as f64 >= b.warn_at * b.limit as f64;
                Ok((tight || warned).then(|| BudgetCaution {
                    budget_id: b.id.clone(),
                    scope: b.scope_text.clone(),
                    used_pct: if b.limit == 0 { 100.0 } else { st.spent as f64 * 100.0 / b.limit as f64 },
                    spent_usd: usd(st.spent),
                    reserved_usd: usd(st.reserved),
                    limit_usd: usd(b.limit),
                    needed_usd: usd(amount),
                }))
            });
            match verdict {
                Err(r) => return Outlook::Refused(r),
                Ok(Some(c)) => cautions.push(c),
                Ok(None) => {}
            }
        }
        if cautions.is_empty() {
            Outlook::Clear
        } else {
            Outlook::MayRefuse(cautions)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{BudgetConfig, Charge, Window};
    use super::*;

    const MAIN: CallScope<'static> =
        CallScope { agent: "main", model: "gpt-4o-mini", upstream: "openai", mcp_server: "" };

    fn budgets(limit: f64) -> (tempfile::TempDir, Arc<Budgets>) {
        let dir = tempfile::tempdir().unwrap();
        let db = storage::Store::open(&dir.path().join("state")).unwrap();
        let reg = prometheus::Registry::new();
        let audit = Arc::new(audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &reg).unwrap());
        let cfg = BudgetConfig {
            id: None,
            scope: "agent:main".into(),
            window: Window::Daily,
            limit_usd: limit,
            warn_at: Some(0.8),
            timezone: None,
            fleet: false,
        };
        (dir, Arc::new(Budgets::open(&db, &[cfg], audit, &reg).unwrap()))
    }

    #[test]
    fn certain_refusals_and_cautions() {
        let (_d, b) = budgets(1.0);
        let other = CallScope { agent: "ops", ..MAIN };
        assert_eq!(b.outlook(&other, None), Outlook::Clear, "no budget applies: unpriced is fine");
        assert_eq!(b.outlook(&MAIN, None), Outlook::Unpriced);
        assert_eq!(b.outlook(&MAIN, Some(0.10)), Outlook::Clear);
        match b.outlook(&MAIN, Some(1.5)) {
            Outlook::Refused(r) => assert_eq!(r.needed_usd, Some(1.5)),
            o => panic!("a worst case above the whole limit can never fit: {o:?}"),
        }
        // Spend $0.92: past the warning level, and a $0.10 call no longer fits right now.
        b.reserve(&MAIN, 0.92).unwrap().settle(Charge::Usd(0.92));
        match b.outlook(&MAIN, Some(0.10)) {
            Outlook::MayRefuse(c) => {
                assert_eq!(c.len(), 1);
                assert_eq!((c[0].budget_id.as_str(), c[0].used_pct.round()), ("agent:main@daily", 92.0));
                assert!((c[0].needed_usd - 0.10).abs() < 1e-9);
            }
            o => panic!("{o:?}"),
        }
        // The limit reached: the breaker is open, a certain refusal.
        b.reserve(&MAIN, 0.08).unwrap().settle(Charge::Usd(0.08));
        assert!(matches!(b.outlook(&MAIN, Some(0.01)), Outlook::Refused(Refusal { needed_usd: None, .. })));
    }
}
