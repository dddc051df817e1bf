//! The web console's shared state: the node's name and the way to clusterd's control
//! API, the one place every page asks.

use std::sync::Arc;

use tandem_api::{Api, ClientError, EventJson, Reply, Request, Token};

/// Shared state of the web console.
pub struct App {
    /// This node's name (`node1`, `node2`).
    pub node: String,
    api: Box<dyn Api>,
    /// Send `Strict-Transport-Security` (the node serves its cluster's certificate).
    pub hsts: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("node", &self.node)
            .field("hsts", &self.hsts)
            .finish_non_exhaustive()
    }
}

/// clusterd could not be asked: why, for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer(pub String);

impl App {
    /// A console for `node` asking clusterd through `api`.
    #[must_use]
    pub fn new(node: &str, api: Box<dyn Api>) -> App {
        App {
            node: node.to_owned(),
            api,
            hsts: false,
        }
    }

    /// Sends `Strict-Transport-Security` with every answer.
    #[must_use]
    pub fn with_hsts(mut self, on: bool) -> App {
        self.hsts = on;
        self
    }

    /// One request with `payload` for the session of `token`, off the event loop
    /// (clusterd may take a while: argon2, scrypt, the other node).
    pub async fn ask_with(
        self: &Arc<Self>,
        token: Option<&Token>,
        request: Request,
        payload: Vec<u8>,
    ) -> Result<(Reply, Vec<u8>), NoAnswer> {
        let app = Arc::clone(self);
        let token = token.cloned();
        tokio::task::spawn_blocking(move || {
            app.api
                .call(token.as_ref(), &request, &payload)
                .map_err(|e| NoAnswer(chain(&e)))
        })
        .await
        .unwrap_or_else(|_| Err(NoAnswer("the request failed unexpectedly".into())))
    }

    /// One request without payload.
    pub async fn ask(
        self: &Arc<Self>,
        token: Option<&Token>,
        request: Request,
    ) -> Result<Reply, NoAnswer> {
        self.ask_with(token, request, Vec::new())
            .await
            .map(|(r, _)| r)
    }

    /// The recent events, at most `limit`, the newest last.
    pub async fn events(self: &Arc<Self>, limit: usize) -> Result<Vec<EventJson>, NoAnswer> {
        let app = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut all = app
                .api
                .events(usize::MAX)
                .map_err(|e| NoAnswer(chain(&e)))?;
            let skip = all.len().saturating_sub(limit);
            Ok(all.split_off(skip))
        })
        .await
        .unwrap_or_else(|_| Err(NoAnswer("the request failed unexpectedly".into())))
    }

    /// Whether the node has a committed configuration. When clusterd cannot tell,
    /// the node counts as configured: the factory password must never open a
    /// configured node (clusterd decides that anyway).
    pub async fn configured(self: &Arc<Self>) -> bool {
        match self.ask(None, Request::Mode).await {
            Ok(Reply::Mode(m)) => m.configured,
            _ => true,
        }
    }
}

/// An error and its causes on one line.
#[must_use]
pub fn chain(e: &ClientError) -> String {
    tandem_api::error_chain(e)
}
