//! The drift file: the frequency estimate kept across restarts.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use ntp_proto::System;

pub fn read_drift(path: &PathBuf) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.split_whitespace().next()?.parse::<f64>() {
        Ok(ppm) if ppm.is_finite() && ppm.abs() <= 500.0 => Some(ppm),
        _ => {
            tracing::warn!(path = %path.display(), "drift file unreadable; starting from 0 ppm");
            None
        }
    }
}

pub fn save_drift(path: Option<&PathBuf>, system: &System) {
    let Some(path) = path else { return };
    if !system.is_synchronized() {
        return;
    }
    let write = || -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{:.6}\n", system.frequency().ppm()))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    if let Err(e) = write().with_context(|| format!("writing drift file {}", path.display())) {
        tracing::warn!("{e:#}");
    }
}
