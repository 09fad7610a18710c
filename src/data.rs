//! The data listener's faces, chosen by path prefix: the model proxy (`/a/{agent}/...`, the
//! default, which also answers unknown paths in the caller's shape) and, as they are added,
//! the other faces a gateway calls (the MCP endpoint, the plugin decision endpoint). Each face
//! is a complete service with its own edge; this only picks one, so a face never pays for
//! another's layers.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use proxy::body::ResBody;
use proxy::layers::BoxFut;
use tower::util::BoxCloneSyncService;
use tower::Service;

/// One face of the data listener.
pub type Face = BoxCloneSyncService<Request<listener::TimedBody>, Response<ResBody>, Infallible>;

/// The dispatcher (see the module docs). Cloning it (hyper's adapter does, per request) is one
/// reference count; a request then clones only the face it goes to.
#[derive(Clone)]
pub struct Faces(Arc<Table>);

#[derive(Clone)]
struct Table {
    /// `(path prefix, face)`, checked in order.
    prefixed: Vec<(&'static str, Face)>,
    /// Everything else: the model proxy.
    model: Face,
}

impl Faces {
    /// Faces with only the model proxy.
    pub fn new(model: Face) -> Faces {
        Faces(Arc::new(Table { prefixed: Vec::new(), model }))
    }

    /// Serve paths starting with `prefix` (e.g. `/mcp/`) with `face`.
    pub fn with(self, prefix: &'static str, face: Face) -> Faces {
        let Table { mut prefixed, model } = Arc::unwrap_or_clone(self.0);
        prefixed.push((prefix, face));
        Faces(Arc::new(Table { prefixed, model }))
    }
}

impl Service<Request<listener::TimedBody>> for Faces {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFut<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<listener::TimedBody>) -> Self::Future {
        let path = req.uri().path();
        let face =
            self.0.prefixed.iter().find(|(prefix, _)| path.starts_with(*prefix)).map_or(&self.0.model, |(_, f)| f);
        face.clone().call(req)
    }
}
