//! Builds the configured sinks.

use std::sync::Arc;

use relay_sink::file::{FileSink, FileSinkConfig};
use relay_sink::Sink;

use crate::config::{SinkConfig, SinkKind};

#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    #[error(transparent)]
    File(#[from] relay_sink::file::FileSinkError),
    #[error("sink {name:?}: type {kind} is not available in this build yet")]
    Unavailable { name: String, kind: &'static str },
}

/// Checks a sink's configuration without connecting anywhere or creating files.
pub fn check(cfg: &SinkConfig) -> Result<String, SinkBuildError> {
    match &cfg.kind {
        SinkKind::File(f) => check_file(&cfg.name, f),
        other => Err(SinkBuildError::Unavailable {
            name: cfg.name.clone(),
            kind: other.type_name(),
        }),
    }
}

fn check_file(name: &str, f: &FileSinkConfig) -> Result<String, SinkBuildError> {
    use relay_sink::file::FileSinkError;
    let config_err = |detail: &str| FileSinkError::Config {
        sink: name.to_string(),
        detail: detail.to_string(),
    };
    if f.path.is_empty() {
        return Err(config_err("path is empty (a directory, or \"-\" for stdout)").into());
    }
    if f.max_file_bytes == 0 {
        return Err(config_err("max_file_bytes must be at least 1").into());
    }
    if f.max_files == Some(0) {
        return Err(
            config_err("max_files must be at least 1 (or absent to keep all files)").into(),
        );
    }
    if f.path == "-" {
        return Ok("file: stdout".to_string());
    }
    let path = std::path::PathBuf::from(&f.path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(format!("file: {}", f.path)),
        Ok(_) => Err(FileSinkError::NotADirectory {
            sink: name.to_string(),
            path,
        }
        .into()),
        // `run` creates a missing directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(format!("file: {} (will be created)", f.path))
        }
        Err(source) => Err(FileSinkError::Io {
            sink: name.to_string(),
            path,
            source,
        }
        .into()),
    }
}

/// Opens or connects the sink.
pub async fn build(cfg: &SinkConfig) -> Result<Arc<dyn Sink>, SinkBuildError> {
    match &cfg.kind {
        SinkKind::File(f) => Ok(Arc::new(FileSink::open(&cfg.name, f)?)),
        other => Err(SinkBuildError::Unavailable {
            name: cfg.name.clone(),
            kind: other.type_name(),
        }),
    }
}
