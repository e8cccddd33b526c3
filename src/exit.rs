//! Exit codes, decided in one place from an error's cause chain: 0 success; 1 a stage failed on its
//! inputs or at run time; 2 a usage or configuration error, found before any work started; 130 or
//! 143 training stopped on `SIGINT` or `SIGTERM` after writing a checkpoint.
//!
//! Library errors say what they are (`is_config`, `is_user_input`); the binary marks its own usage
//! errors, and library errors caused by what the user configured (the mixer's `[mix]` checks), with
//! the [`Usage`] context, which keeps the cause below it.

use mixlab_stages::Usage;

/// The kinds of ending a batch scheduler needs to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// Usage or configuration error: exit code 2.
    Usage,
    /// A stage failed on its inputs or at run time: exit code 1.
    Stage,
    /// Training stopped cleanly on this signal after a checkpoint: 128 + its number, as a shell
    /// reports a process the signal ended (130 for `SIGINT`, 143 for `SIGTERM`).
    Stopped(i32),
}

impl ExitClass {
    /// Classifies an error by its cause chain.
    pub fn of(err: &anyhow::Error) -> Self {
        if err.downcast_ref::<Usage>().is_some() || err.chain().any(is_usage) {
            ExitClass::Usage
        } else if err.chain().any(is_interruption) {
            ExitClass::Stopped(mixlab_stages::signals::stop_requested().unwrap_or(libc::SIGINT))
        } else {
            ExitClass::Stage
        }
    }

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitClass::Usage => 2,
            ExitClass::Stage => 1,
            ExitClass::Stopped(signal) => u8::try_from(128 + signal).unwrap_or(1),
        }
    }
}

fn is_interruption(cause: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        cause.downcast_ref::<mixlab_trainer::error::Error>(),
        Some(mixlab_trainer::error::Error::Interrupted { .. })
    )
}

fn is_usage(cause: &(dyn std::error::Error + 'static)) -> bool {
    if cause.is::<Usage>() {
        return true;
    }
    if let Some(e) = cause.downcast_ref::<mixlab_ingest::Error>() {
        return e.is_config();
    }
    if let Some(e) = cause.downcast_ref::<mixlab_trainer::error::Error>() {
        return e.is_config();
    }
    if let Some(e) = cause.downcast_ref::<mixlab_simulator::Error>() {
        return e.is_config();
    }
    cause
        .downcast_ref::<mixlab_artefacts::Error>()
        .is_some_and(mixlab_artefacts::Error::is_user_input)
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn usage_context_keeps_the_cause_and_sets_the_class() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = Err::<(), _>(io)
            .context(Usage("cannot read the mixture".into()))
            .context("training runs/x")
            .unwrap_err();
        assert_eq!(ExitClass::of(&err), ExitClass::Usage);
        assert_eq!(
            format!("{err:#}"),
            "training runs/x: cannot read the mixture: no such file"
        );
    }

    #[test]
    fn library_errors_classify_by_kind() {
        let config = anyhow::Error::new(mixlab_trainer::error::Error::Config("bad".into()));
        assert_eq!(ExitClass::of(&config.context("x")), ExitClass::Usage);
        let diverged = anyhow::Error::new(mixlab_trainer::error::Error::NonFiniteLoss {
            step: 3,
            loss: f32::NAN,
            last_good: "none".into(),
        });
        assert_eq!(ExitClass::of(&diverged), ExitClass::Stage);
        let stopped = anyhow::Error::new(mixlab_trainer::error::Error::Interrupted { step: 7 });
        assert_eq!(ExitClass::of(&stopped.context("training")).code(), 130);
        let wrapped =
            mixlab_trainer::error::Error::Shards(mixlab_ingest::Error::Config("x".into()));
        assert_eq!(
            ExitClass::of(&anyhow::Error::new(wrapped)),
            ExitClass::Usage
        );
    }
}
