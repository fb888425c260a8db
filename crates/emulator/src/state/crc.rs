//! X's CRC checks of a webhook: at registration, on demand and hourly.

use super::*;

impl Shared {
    /// Runs one CRC check against `url` with `secret`.
    pub async fn crc(&self, url: &str, secret: &str, reason: &str) -> CrcCheck {
        let token = random_token(40);
        let at = Utc::now();
        let t0 = Instant::now();
        let fail = |status: Option<u16>, error: String, t0: Instant| CrcCheck {
            at,
            reason: reason.to_owned(),
            ok: false,
            status,
            latency_ms: t0.elapsed().as_millis() as u64,
            error: Some(error),
        };
        let mut u = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return fail(None, format!("invalid url: {e}"), t0),
        };
        u.query_pairs_mut()
            .append_pair("crc_token", &token)
            .append_pair("nonce", &random_token(16));
        let res = self
            .http
            .get(u)
            .timeout(Duration::from_millis(self.cfg.crc_timeout_ms))
            .send()
            .await;
        let resp = match res {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return fail(
                    None,
                    format!("no answer within {} ms", self.cfg.crc_timeout_ms),
                    t0,
                )
            }
            Err(e) => return fail(None, format!("request failed: {e}"), t0),
        };
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            return fail(Some(status), "redirects are not followed".into(), t0);
        }
        if !resp.status().is_success() {
            return fail(Some(status), format!("status {status}"), t0);
        }
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                return fail(
                    Some(status),
                    format!("no answer within {} ms", self.cfg.crc_timeout_ms),
                    t0,
                )
            }
            Err(e) => return fail(Some(status), format!("reading the answer: {e}"), t0),
        };
        let expected = sign(secret, token.as_bytes());
        let got = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("response_token")?.as_str().map(str::to_owned));
        match got {
            Some(g) if ct_eq(g.as_bytes(), expected.as_bytes()) => CrcCheck {
                at,
                reason: reason.to_owned(),
                ok: true,
                status: Some(status),
                latency_ms: t0.elapsed().as_millis() as u64,
                error: None,
            },
            Some(_) => fail(Some(status), "wrong response_token".into(), t0),
            None => fail(
                Some(status),
                "answer has no response_token in a JSON object".into(),
                t0,
            ),
        }
    }

    fn push_crc(&self, webhook_id: &str, check: &CrcCheck) -> Option<bool> {
        let mut db = self.db.lock();
        let w = db.webhooks.iter_mut().find(|w| w.id == webhook_id)?;
        w.valid = check.ok;
        w.crc_checks.push(check.clone());
        if w.crc_checks.len() > 100 {
            w.crc_checks.remove(0);
        }
        Some(w.valid)
    }

    /// Re-runs the CRC of one webhook and records the result. `None` when it does not exist.
    pub async fn recrc(&self, webhook_id: &str, reason: &str) -> Option<CrcCheck> {
        let (url, app) = {
            let db = self.db.lock();
            let w = db.webhooks.iter().find(|w| w.id == webhook_id)?;
            (w.url.clone(), w.app.clone())
        };
        let secret = self.app(&app)?.consumer_secret.clone();
        let check = self.crc(&url, &secret, reason).await;
        if check.ok {
            tracing::info!(webhook_id, url, reason, "CRC passed");
        } else {
            tracing::warn!(webhook_id, url, reason, error = ?check.error, "CRC failed: webhook invalid");
        }
        self.push_crc(webhook_id, &check)?;
        Some(check)
    }

    /// Re-CRCs every webhook (what X does hourly).
    pub async fn recrc_all(&self, reason: &str) {
        let ids: Vec<String> = self
            .db
            .lock()
            .webhooks
            .iter()
            .map(|w| w.id.clone())
            .collect();
        for id in ids {
            self.recrc(&id, reason).await;
        }
    }

    // ---------------------------------------------------------- webhooks
}
