//! Repairs CometBFT's event index after an unclean stop (finding F2: a
//! cometbft killed just after "committed state" never indexed those
//! blocks, so their transactions were missing from `/tx` and `tx_search`).
//!
//! CometBFT indexes a block on a goroutine fed by its event bus after the
//! block is committed; a kill in between loses the entries for good, since
//! a restart replays nothing that is committed. `cometbft reindex-event`
//! rebuilds them offline from the block store and the stored FinalizeBlock
//! responses. It needs care:
//!
//! * It fails with exit code 0: checks of the range print `event re-index
//!   failed: ...` and return; only a failure in the middle panics (exit 2).
//!   Success is the line `event re-index finished`.
//! * A start above the block store's height fails (`requested start height:
//!   S, store height: H`); an end above it is clamped to it.
//! * The block store may hold one block more than the state store has
//!   FinalizeBlock responses for (the block is saved before it is
//!   executed): that fails with `not able to load ABCI Response at height
//!   N`. That block is executed, and so indexed, when cometbft starts again,
//!   so the range ends at N - 1 then.
//! * With `indexer = "null"` there is nothing to repair.
//!
//! Re-indexing a height twice is harmless: the entries are overwritten.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How many times the range is narrowed after an answer that says how.
pub const MAX_ATTEMPTS: usize = 4;

/// How much of each output stream is kept (the progress bar prints a line
/// per height; the verdict is at the end).
const TAIL_BYTES: usize = 16 * 1024;

/// What to re-index.
#[derive(Clone, Debug)]
pub struct ReindexRequest<'a> {
    /// The `cometbft` binary.
    pub cometbft_bin: &'a Path,
    /// CometBFT's home.
    pub home: &'a Path,
    /// The first height; 0 means the block store's base.
    pub start: u64,
    /// How far below the store's height to start when `start` is above it.
    pub margin: u64,
    /// How long one run of `reindex-event` may take.
    pub timeout: Duration,
}

/// What the repair did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReindexOutcome {
    /// Heights `start..=end` were re-indexed.
    Done {
        /// The first height.
        start: u64,
        /// The last height, when known.
        end: Option<u64>,
    },
    /// The block store is empty: nothing to do.
    Empty,
    /// The node indexes nothing (`indexer = "null"`).
    Disabled,
}

/// Why the repair failed.
#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    /// `cometbft` could not be started.
    #[error("cannot run {bin} reindex-event: {source}")]
    Spawn {
        /// The binary.
        bin: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A run took too long (it was killed).
    #[error("reindex-event did not finish within {0:?}")]
    Timeout(Duration),
    /// `reindex-event` failed in a way that says no better range.
    #[error("reindex-event over {range} failed: {tail}")]
    Failed {
        /// The range asked for.
        range: String,
        /// The end of its output.
        tail: String,
    },
    /// The range was narrowed [`MAX_ATTEMPTS`] times without success.
    #[error("reindex-event did not succeed in {MAX_ATTEMPTS} attempts; last output: {0}")]
    Exhausted(String),
}

/// The next step after one run, from its exit and output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// It finished; the heights it reports for the range, if it printed them.
    Finished {
        /// `set the start block height to the base height ... N`.
        start: Option<u64>,
        /// `set the end block height to the latest height ... N`.
        end: Option<u64>,
    },
    /// Run again over this range (`None`: the store's end).
    Retry {
        /// The first height.
        start: u64,
        /// The last height.
        end: Option<u64>,
        /// Why, for the log.
        why: String,
    },
    /// The store holds no blocks.
    Empty,
    /// No event sink.
    Disabled,
    /// Give up.
    Fatal(String),
}

/// The number right after `marker` in `text` (the last occurrence).
fn number_after(text: &str, marker: &str) -> Option<u64> {
    let at = text.rfind(marker)? + marker.len();
    let digits: String = text[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Decides what follows a run over `start..=end` that exited with
/// `success` and printed `output`.
pub fn classify(success: bool, output: &str, start: u64, end: Option<u64>, margin: u64) -> Step {
    if success && output.contains("event re-index finished") {
        return Step::Finished {
            start: number_after(output, "base height of the blockstore"),
            end: number_after(output, "latest height of the blockstore"),
        };
    }
    if output.contains("found null event sink") {
        return Step::Disabled;
    }
    if let Some(store) = number_after(output, "store height:") {
        if store == 0 {
            return Step::Empty;
        }
        let retry = store.saturating_sub(margin).max(1);
        if retry < start {
            return Step::Retry {
                start: retry,
                end,
                why: format!("the block store ends at {store}, below the start {start}"),
            };
        }
    }
    if let Some(base) = number_after(output, "base height:") {
        if base > start {
            return Step::Retry {
                start: base,
                end,
                why: format!("the block store begins at {base} (pruned)"),
            };
        }
    }
    let missing = number_after(output, "not able to load ABCI Response at height")
        .or_else(|| number_after(output, "not able to load block at height"));
    if let Some(missing) = missing {
        let first = if start == 0 {
            number_after(output, "base height of the blockstore").unwrap_or(1)
        } else {
            start
        };
        let shorter = end.is_none_or(|e| missing <= e);
        if missing > first && shorter {
            return Step::Retry {
                start,
                end: Some(missing - 1),
                why: format!(
                    "height {missing} has no stored results yet (cometbft executes and \
                     indexes it when it starts)"
                ),
            };
        }
    }
    Step::Fatal(last_lines(output, 6))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .flat_map(|l| l.rsplit('\r').next())
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn describe(start: u64, end: Option<u64>) -> String {
    let first = if start == 0 {
        "base".to_owned()
    } else {
        start.to_string()
    };
    match end {
        Some(end) => format!("{first}..={end}"),
        None => format!("{first}..=store height"),
    }
}

/// Re-indexes from `request.start` to the block store's last executed
/// height, narrowing the range as `reindex-event`'s answers say.
pub async fn reindex(request: &ReindexRequest<'_>) -> Result<ReindexOutcome, ReindexError> {
    let mut start = request.start;
    let mut end = None;
    let mut last_output = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        tracing::info!(
            attempt,
            range = %describe(start, end),
            "running cometbft reindex-event"
        );
        let (success, output) = run_once(request, start, end).await?;
        match classify(success, &output, start, end, request.margin) {
            Step::Finished {
                start: reported_start,
                end: reported_end,
            } => {
                return Ok(ReindexOutcome::Done {
                    start: if start == 0 {
                        reported_start.unwrap_or(start)
                    } else {
                        start
                    },
                    end: end.or(reported_end),
                })
            }
            Step::Retry {
                start: next_start,
                end: next_end,
                why,
            } => {
                tracing::warn!(
                    range = %describe(start, end),
                    next = %describe(next_start, next_end),
                    "{why}; narrowing the range"
                );
                start = next_start;
                end = next_end;
            }
            Step::Empty => return Ok(ReindexOutcome::Empty),
            Step::Disabled => return Ok(ReindexOutcome::Disabled),
            Step::Fatal(tail) => {
                return Err(ReindexError::Failed {
                    range: describe(start, end),
                    tail,
                })
            }
        }
        last_output = last_lines(&output, 6);
    }
    Err(ReindexError::Exhausted(last_output))
}

async fn run_once(
    request: &ReindexRequest<'_>,
    start: u64,
    end: Option<u64>,
) -> Result<(bool, String), ReindexError> {
    let mut command = Command::new(request.cometbft_bin);
    command
        .arg("reindex-event")
        .arg("--home")
        .arg(request.home)
        .arg("--start-height")
        .arg(start.to_string());
    if let Some(end) = end {
        command.arg("--end-height").arg(end.to_string());
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ReindexError::Spawn {
            bin: request.cometbft_bin.display().to_string(),
            source,
        })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async {
        let (out, err) = tokio::join!(read_tail(stdout), read_tail(stderr));
        let status = child.wait().await;
        (out, err, status)
    };
    // On timeout the future, and with it the child, is dropped: killed.
    let (out, err, status) = tokio::time::timeout(request.timeout, run)
        .await
        .map_err(|_| ReindexError::Timeout(request.timeout))?;
    let success = status.map(|s| s.success()).unwrap_or(false);
    Ok((success, format!("{out}\n{err}")))
}

async fn read_tail<R: AsyncRead + Unpin>(reader: Option<R>) -> String {
    let Some(mut reader) = reader else {
        return String::new();
    };
    let mut kept = Vec::with_capacity(TAIL_BYTES);
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * TAIL_BYTES {
                    kept.drain(..kept.len() - TAIL_BYTES);
                }
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINISHED: &str = "set the end block height to the latest height of the blockstore 19 \n\
        start re-indexing events:\n[   ]  5%        3/19\r[  ]100%       19/19\nevent re-index finished\n";

    #[test]
    fn a_finished_run() {
        assert_eq!(
            classify(true, FINISHED, 3, None, 100),
            Step::Finished {
                start: None,
                end: Some(19)
            }
        );
        // The words without a success exit are not enough.
        assert!(matches!(
            classify(false, FINISHED, 3, None, 100),
            Step::Fatal(_)
        ));
    }

    #[test]
    fn a_start_above_the_store_moves_down_by_the_margin() {
        let out = "event re-index failed:  height is not available (requested start height: 1000, store height: 19)\n";
        assert_eq!(
            classify(true, out, 1000, None, 5),
            Step::Retry {
                start: 14,
                end: None,
                why: "the block store ends at 19, below the start 1000".into()
            }
        );
        assert!(matches!(
            classify(true, out, 1000, None, 100),
            Step::Retry { start: 1, .. }
        ));
        let empty = "event re-index failed:  height is not available (requested start height: 5, store height: 0)";
        assert_eq!(classify(true, empty, 5, None, 5), Step::Empty);
    }

    #[test]
    fn a_pruned_store_moves_the_start_up() {
        let out = "event re-index failed:  height is not available (requested start height: 2, base height: 50)";
        assert!(matches!(
            classify(true, out, 2, None, 5),
            Step::Retry {
                start: 50,
                end: None,
                ..
            }
        ));
        // Never a loop: the same answer for the base itself is fatal.
        assert!(matches!(classify(true, out, 50, None, 5), Step::Fatal(_)));
    }

    #[test]
    fn a_block_without_results_ends_the_range_below_it() {
        let out = "start re-indexing events:\npanic: event re-index failed: : not able to load ABCI Response at height 20 from the statestore\n\ngoroutine 1 [running]:";
        assert!(matches!(
            classify(false, out, 3, None, 5),
            Step::Retry {
                start: 3,
                end: Some(19),
                ..
            }
        ));
        // At the start itself there is nothing below to keep.
        assert!(matches!(classify(false, out, 20, None, 5), Step::Fatal(_)));
        // And a range never grows.
        assert!(matches!(
            classify(false, out, 3, Some(10), 5),
            Step::Fatal(_)
        ));
        let base =
            format!("set the start block height to the base height of the blockstore 1 \n{out}");
        assert!(matches!(
            classify(false, &base, 0, None, 5),
            Step::Retry {
                start: 0,
                end: Some(19),
                ..
            }
        ));
    }

    #[test]
    fn no_sink_and_garbage() {
        let out = "event re-index failed:  found null event sink, please check the tx-index section in the config.toml";
        assert_eq!(classify(true, out, 1, None, 5), Step::Disabled);
        match classify(false, "\u{0}\u{ff}garbage\r\nmore", 1, None, 5) {
            Step::Fatal(tail) => assert!(tail.contains("more")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(true, "", 1, None, 5), Step::Fatal(_)));
        assert_eq!(
            number_after("store height: 99999999999999999999999", "store height:"),
            None
        );
    }
}
