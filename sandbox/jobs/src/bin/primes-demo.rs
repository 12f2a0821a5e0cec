//! Helper of the demo: writes the primes module and a job's input files,
//! sums the outputs the network returned, and counts the same range locally
//! (natively, on one core) so the two can be compared.
//!
//! ```text
//! primes-demo wasm <path>                     write the primes module
//! primes-demo inputs <lo> <hi> <tasks> <dir>  one input file per task
//! primes-demo sum <dir>                       add up the outputs (u64 LE each)
//! primes-demo count <lo> <hi>                 count locally, with the time taken
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn number(text: Option<&String>, name: &str) -> Result<u64, String> {
    text.ok_or(format!("missing <{name}>"))?
        .parse()
        .map_err(|_| format!("<{name}> must be a whole number"))
}

fn run(args: &[String]) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    match args.first().map(String::as_str) {
        Some("wasm") => {
            let path = args.get(1).ok_or("missing <path>")?;
            std::fs::write(path, compute_jobs::PRIMES_WASM).map_err(io)
        }
        Some("inputs") => {
            let lo = number(args.get(1), "lo")?;
            let hi = number(args.get(2), "hi")?;
            let tasks = number(args.get(3), "tasks")?;
            let dir = Path::new(args.get(4).ok_or("missing <dir>")?);
            if tasks == 0 || hi <= lo {
                return Err("need lo < hi and at least one task".into());
            }
            std::fs::create_dir_all(dir).map_err(io)?;
            let span = (hi - lo).div_ceil(tasks);
            for i in 0..tasks {
                let start = lo + i * span;
                let end = (start + span).min(hi);
                let input = compute_jobs::primes::encode_input(start, end);
                std::fs::write(dir.join(format!("{i:05}.in")), input).map_err(io)?;
            }
            Ok(())
        }
        Some("sum") => {
            let dir = Path::new(args.get(1).ok_or("missing <dir>")?);
            let mut total: u64 = 0;
            let mut files = 0;
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .map_err(io)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            entries.sort();
            for path in entries {
                let bytes = std::fs::read(&path).map_err(io)?;
                let count = <[u8; 8]>::try_from(bytes.as_slice())
                    .map_err(|_| format!("{} is not a u64 count", path.display()))?;
                total += u64::from_le_bytes(count);
                files += 1;
            }
            println!("{total} primes in {files} outputs");
            Ok(())
        }
        Some("count") => {
            let lo = number(args.get(1), "lo")?;
            let hi = number(args.get(2), "hi")?;
            let started = Instant::now();
            let output = compute_jobs::primes::job(&compute_jobs::primes::encode_input(lo, hi));
            let count = u64::from_le_bytes(<[u8; 8]>::try_from(output.as_slice()).unwrap_or_default());
            println!("{count} primes, counted locally in {} ms", started.elapsed().as_millis());
            Ok(())
        }
        _ => Err("usage: primes-demo wasm <path> | inputs <lo> <hi> <tasks> <dir> | sum <dir> | count <lo> <hi>".into()),
    }
}
