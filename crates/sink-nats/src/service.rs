//! The NATS sink's service: connect (options, auth, TLS, the stream to set up), send one
//! message, await its JetStream ack; the batch loop is [`relay_sink::driver`]'s.

use super::*;

/// The NATS JetStream sink (see the crate documentation).
pub struct NatsSink {
    name: String,
    client: async_nats::Client,
    js: jetstream::Context,
    routing: Routing,
    max_in_flight: usize,
    ack_timeout: Duration,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("subject", &self.routing.subject.as_str())
            .field("deadletter_subject", &self.routing.deadletter_subject)
            .field("wire_mode", &self.routing.wire_mode)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Validates `cfg`, connects (failing if no server answers within `connect_timeout`)
    /// and, when `cfg.stream` is set, creates the stream if it does not exist or checks
    /// the one that does (see [`StreamSetup`]). After this the client
    /// reconnects by itself, forever, with backoff (at most 4 s between attempts).
    pub async fn connect(name: &str, cfg: &NatsSinkConfig) -> Result<NatsSink, NatsSinkError> {
        let (routing, servers) = cfg.routing(name)?;
        let options = connect_options(name, cfg).await?;
        // async-nats bounds the TCP connect by `connection_timeout`, not the handshake that
        // follows: a server that accepts and stays silent would hang here without this.
        let client = tokio::time::timeout(cfg.connect_timeout, options.connect(servers))
            .await
            .map_err(|_| NatsSinkError::ConnectTimeout {
                sink: name.to_owned(),
                after: cfg.connect_timeout,
            })?
            .map_err(|source| NatsSinkError::Connect {
                sink: name.to_owned(),
                source,
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(cfg.ack_timeout);

        if let Some(setup) = &cfg.stream {
            crate::setup::ensure(&js, name, setup, &routing).await?;
        }
        tracing::info!(sink = name, subject = %routing.subject, "nats sink connected");
        Ok(NatsSink {
            name: name.to_owned(),
            client,
            js,
            routing,
            max_in_flight: cfg.max_in_flight,
            ack_timeout: cfg.ack_timeout,
        })
    }

    /// The subject a record is published to.
    pub fn subject_for(&self, message: &Message) -> String {
        self.routing.subject_for(message)
    }

    /// The underlying client (for tests and tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn send(
        &self,
        message: &Message,
        max_payload: usize,
    ) -> Result<(String, PublishAckFuture), PublishError> {
        let (subject, headers, body) = self.routing.encode(message);
        let size = body.len() + headers_len(&headers);
        if max_payload > 0 && size > max_payload {
            return Err(PublishError::permanent(
                Reason::TooLarge,
                format!("{size} bytes exceed the server's max_payload of {max_payload}"),
            ));
        }
        let publish = jetstream::context::Publish::build()
            .payload(body)
            .headers(headers);
        match self.js.send_publish(subject.clone(), publish).await {
            Ok(ack) => Ok((subject, ack)),
            Err(e) => Err(map_publish_error(&e, &subject)),
        }
    }
}

async fn connect_options(
    name: &str,
    cfg: &NatsSinkConfig,
) -> Result<async_nats::ConnectOptions, NatsSinkError> {
    let auth = &cfg.auth;
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("activity-relay/{name}"))
        .connection_timeout(cfg.connect_timeout)
        .request_timeout(Some(cfg.ack_timeout));
    if let Some(token) = &auth.token {
        options = options.token(token.expose().to_owned());
    }
    if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(seed) = &auth.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(path) = &auth.credentials_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| NatsSinkError::Credentials {
                    sink: name.to_owned(),
                    path: path.clone(),
                    source,
                })?;
    }
    let tls = &cfg.tls;
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.require_tls {
        options = options.require_tls(true);
    }
    Ok(options)
}

fn map_publish_error(e: &jetstream::context::PublishError, subject: &str) -> PublishError {
    match e.kind() {
        PublishErrorKind::TimedOut => PublishError::retryable(
            Reason::Timeout,
            format!("no JetStream ack for {subject} in time"),
        ),
        PublishErrorKind::StreamNotFound => PublishError::retryable(
            Reason::NoStream,
            format!(
                "no responders: no JetStream stream captures subject {subject} \
                 (create the stream or fix the subject template)"
            ),
        ),
        PublishErrorKind::BrokenPipe => PublishError::retryable(
            Reason::ConnectionClosed,
            format!("connection closed before the ack for {subject}"),
        ),
        _ => {
            let js_error = std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
            match js_error {
                Some(js)
                    if js.error_code()
                        == async_nats::jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM =>
                {
                    PublishError::permanent(Reason::TooLarge, format!("{subject}: {js}"))
                }
                Some(js) => {
                    PublishError::retryable(Reason::BrokerError, format!("{subject}: {js}"))
                }
                None => PublishError::retryable(Reason::BrokerError, format!("{subject}: {e}")),
            }
        }
    }
}

#[async_trait::async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        // While the client is disconnected a publish would only sit in its buffer until the
        // ack times out (and be sent on reconnect anyway): fail fast instead.
        if self.client.connection_state() == State::Disconnected {
            let e =
                PublishError::retryable(Reason::Disconnected, "not connected to any NATS server");
            return fail_all(batch, &e);
        }
        // Once per batch: server_info() clones the whole INFO.
        let max_payload = self.client.server_info().max_payload;
        let mut confirmations = Confirmations::new(batch.len(), self.max_in_flight);
        for (i, message) in batch.iter().enumerate() {
            confirmations.wait_for_room().await;
            match self.send(message, max_payload).await {
                Ok((subject, ack)) => confirmations.sent(i, async move {
                    ack.await
                        .map(|_| ())
                        .map_err(|e| map_publish_error(&e, &subject))
                }),
                Err(e) => confirmations.failed(i, e),
            }
        }
        confirmations.finish(&self.name).await
    }

    async fn ready(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    async fn close(&self) -> Result<(), PublishError> {
        // Every confirmed record is already acked; this only pushes out what is buffered.
        // Bounded: a flush while disconnected would wait for a reconnect.
        match tokio::time::timeout(self.ack_timeout, self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PublishError::retryable(Reason::FlushFailed, e.to_string())),
            Err(_) => Err(PublishError::retryable(
                Reason::Timeout,
                "flush did not complete in time",
            )),
        }
    }
}
