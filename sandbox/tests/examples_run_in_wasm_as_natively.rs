//! The example jobs: each gives in wasm exactly the bytes that the same
//! source gives natively, and `verify` accepts good answers only.

mod common;

use common::{inputs, limits, sandbox};
use compute_jobs::hashsearch;
use compute_sandbox::{Outcome, Verdict};

#[test]
fn every_example_gives_the_native_bytes() {
    let sandbox = sandbox();
    for (name, wasm, native, input) in inputs() {
        let module = sandbox
            .prepare(wasm)
            .unwrap_or_else(|e| panic!("{name} refused: {e}"));
        let execution = sandbox
            .run(&module, &input, &limits())
            .expect("no worker fault");
        assert_eq!(
            execution.outcome,
            Outcome::Completed(native(&input)),
            "{name}"
        );
        assert!(execution.fuel_used > 0, "{name} used no fuel");
    }
}

#[test]
fn only_the_search_exports_verify() {
    let sandbox = sandbox();
    for (name, wasm, _, _) in inputs() {
        let module = sandbox.prepare(wasm).unwrap();
        assert_eq!(module.info().has_verify, name == "hashsearch", "{name}");
    }
}

#[test]
fn verify_accepts_the_found_nonce_and_rejects_others() {
    let sandbox = sandbox();
    let module = sandbox.prepare(compute_jobs::HASHSEARCH_WASM).unwrap();
    let search = hashsearch::Search {
        difficulty_bits: 12,
        nonce_start: 0,
        nonce_count: 1 << 20,
        prefix: b"block 7",
    };
    let input = search.encode();
    let execution = sandbox.run(&module, &input, &limits()).unwrap();
    let output = execution.output().expect("a nonce is found").to_vec();
    let verdict = sandbox.verify(&module, &input, &output, &limits()).unwrap();
    assert_eq!(verdict.verdict, Verdict::Accepted);
    // Checking costs a tiny fraction of searching.
    assert!(
        verdict.fuel_used * 100 < execution.fuel_used,
        "{} vs {}",
        verdict.fuel_used,
        execution.fuel_used
    );
    let nonce = u64::from_le_bytes(output.clone().try_into().unwrap());
    let wrong = (nonce + 1..).find(|n| !search.accepts(*n)).unwrap();
    for bad in [wrong.to_le_bytes().to_vec(), Vec::new(), vec![1, 2, 3]] {
        assert_eq!(
            sandbox
                .verify(&module, &input, &bad, &limits())
                .unwrap()
                .verdict,
            Verdict::Rejected
        );
    }
    // A module without `verify` gets a deterministic failure, not a panic.
    let primes = sandbox.prepare(compute_jobs::PRIMES_WASM).unwrap();
    assert_eq!(
        sandbox
            .verify(&primes, &input, &output, &limits())
            .unwrap()
            .verdict,
        Verdict::Failed(compute_sandbox::Failure::VerifyMissing)
    );
}
