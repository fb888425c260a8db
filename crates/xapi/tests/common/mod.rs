//! Shared test helpers: an emulator per test, a webhook receiver answering CRC checks,
//! and clients with the emulator's default credentials.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use relay_xapi::{AccessToken, ClientOptions, XClient};
use sha2::Sha256;
use x_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

pub const USER: &str = "2244994945";
pub const OTHER_USER: &str = "3001969357";

/// A webhook receiver: answers CRC checks with the app's consumer secret and holds every
/// delivery POST open (so a replay job stays running for as long as the test needs).
pub struct Receiver {
    pub base: String,
    pub posts: Arc<AtomicUsize>,
}

impl Receiver {
    pub async fn start(consumer_secret: &str) -> Receiver {
        let secret = consumer_secret.to_string();
        let posts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&posts);
        let app = Router::new().route(
            "/webhooks/{name}",
            get(
                move |Query(q): Query<std::collections::HashMap<String, String>>| {
                    let secret = secret.clone();
                    async move {
                        let token = q.get("crc_token").cloned().unwrap_or_default();
                        let mut mac =
                            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
                        mac.update(token.as_bytes());
                        let sig = base64::engine::general_purpose::STANDARD
                            .encode(mac.finalize().into_bytes());
                        Json(serde_json::json!({ "response_token": format!("sha256={sig}") }))
                    }
                },
            )
            .post(move || {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base: format!("http://{addr}"),
            posts,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/webhooks/{name}", self.base)
    }
}

pub struct Setup {
    pub emu: EmulatorHandle,
    pub receiver: Receiver,
    pub client: XClient,
    pub cfg: EmulatorConfig,
}

pub async fn setup() -> Setup {
    setup_with(EmulatorConfig::default(), ClientOptions::default()).await
}

pub async fn setup_with(cfg: EmulatorConfig, options: ClientOptions) -> Setup {
    let emu = Emulator::start(cfg.clone()).await.expect("emulator starts");
    let app = cfg.apps[0].clone();
    let receiver = Receiver::start(&app.consumer_secret).await;
    let client = XClient::with_options(&emu.base_url(), options)
        .expect("client")
        .bearer_token(app.bearer_token.clone())
        .consumer(app.consumer_key.clone(), app.consumer_secret.clone());
    Setup {
        emu,
        receiver,
        client,
        cfg,
    }
}

impl Setup {
    /// The access token of a configured user.
    pub fn user(&self, user_id: &str) -> AccessToken {
        let u = self
            .cfg
            .users
            .iter()
            .find(|u| u.user_id == user_id)
            .expect("configured user");
        AccessToken {
            token: u.access_token.clone(),
            secret: u.access_token_secret.clone().into(),
        }
    }

    pub fn bearer(&self) -> String {
        self.cfg.apps[0].bearer_token.clone()
    }
}
