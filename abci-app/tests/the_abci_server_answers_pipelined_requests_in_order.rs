//! The ABCI socket server, spoken to the way CometBFT speaks: many requests
//! written before any answer is read. Every request is answered, in order;
//! the CheckTx of a burst are checked as they would be one by one (a forged
//! signature among good ones is refused alone); a request without a method
//! gets an exception; a broken frame closes its connection and no other.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use compute_abci::abci::AbciApp;
use compute_abci::server::{Server, MAX_FRAME_BYTES};
use compute_abci::store::MemStore;
use compute_abci::{App, Code};
use compute_proto::{pb, SigningKey, TxBuilder};
use prost::Message;
use serde_json::json;
use tendermint_proto::v0_38::abci::{
    request, response, Request, RequestCheckTx, RequestEcho, RequestFlush, Response,
};

fn check_tx(tx: Vec<u8>) -> Request {
    Request {
        value: Some(request::Value::CheckTx(RequestCheckTx {
            tx: tx.into(),
            r#type: 0,
        })),
    }
}

/// Reads `n` length-delimited responses (bounded by the socket's timeout).
fn read_responses(stream: &mut TcpStream, n: usize) -> Vec<Response> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..10_000 {
        while let Ok(Some(r)) = decode_one(&mut buf) {
            out.push(r);
        }
        if out.len() >= n {
            return out;
        }
        let read = stream.read(&mut chunk).expect("the server answers in time");
        assert!(
            read > 0,
            "the server closed the connection after {} answers",
            out.len()
        );
        buf.extend_from_slice(&chunk[..read]);
    }
    panic!("{} answers of {n}", out.len());
}

fn decode_one(buf: &mut Vec<u8>) -> Result<Option<Response>, prost::DecodeError> {
    let mut view = buf.as_slice();
    let Ok(len) = prost::encoding::decode_varint(&mut view) else {
        return Ok(None);
    };
    let len = usize::try_from(len).unwrap();
    if view.len() < len {
        return Ok(None);
    }
    let prefix = buf.len() - view.len();
    let response = Response::decode(&view[..len])?;
    buf.drain(..prefix + len);
    Ok(Some(response))
}

#[test]
fn the_abci_server_answers_pipelined_requests_in_order() {
    let alice = SigningKey::from_seed([21; 32]);
    let bob = SigningKey::from_seed([22; 32]).account();
    let mut app = App::new(MemStore::new());
    let genesis = json!({
        "accounts": [{"address": alice.account(), "balance": 1_000_000}],
        "params": {},
    });
    app.init_chain("pipe-chain", 1, genesis.to_string().as_bytes(), &[])
        .expect("genesis");
    let server = Server::bind("127.0.0.1:0", AbciApp::new(app), 1 << 16).unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.listen());

    let txs = TxBuilder::new("pipe-chain");
    let transfer = || {
        pb::tx_body::Msg::Transfer(pb::Transfer {
            to: bob.0.to_vec(),
            amount: 1,
        })
    };
    let mut forged = pb::Tx::decode(txs.sign(&alice, 3, transfer()).as_slice()).unwrap();
    forged.signature[5] ^= 0x10;
    let requests = vec![
        Request {
            value: Some(request::Value::Echo(RequestEcho {
                message: "first".to_owned(),
            })),
        },
        check_tx(txs.sign(&alice, 0, transfer())),
        check_tx(txs.sign(&alice, 1, transfer())),
        check_tx(forged.encode_to_vec()),
        check_tx(txs.sign(&alice, 2, transfer())),
        check_tx(vec![0xff; 7]),
        Request { value: None },
        Request {
            value: Some(request::Value::Flush(RequestFlush {})),
        },
    ];
    let mut burst = Vec::new();
    for r in &requests {
        r.encode_length_delimited(&mut burst).unwrap();
    }
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(&burst).unwrap();
    let answers = read_responses(&mut stream, requests.len());
    let codes: Vec<Option<u32>> = answers
        .iter()
        .map(|a| match &a.value {
            Some(response::Value::CheckTx(c)) => Some(c.code),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&answers[0].value, Some(response::Value::Echo(e)) if e.message == "first"),
        "{:?}",
        answers[0]
    );
    assert_eq!(
        codes[1..6],
        [
            Some(Code::Ok.value()),
            Some(Code::Ok.value()),
            Some(Code::InvalidSignature.value()),
            Some(Code::Ok.value()),
            Some(Code::TxMalformed.value()),
        ],
        "{answers:?}"
    );
    assert!(matches!(
        &answers[6].value,
        Some(response::Value::Exception(_))
    ));
    assert!(matches!(&answers[7].value, Some(response::Value::Flush(_))));

    // A frame longer than the limit closes that connection, not the server.
    let mut too_long = Vec::new();
    prost::encoding::encode_varint(u64::try_from(MAX_FRAME_BYTES).unwrap() + 1, &mut too_long);
    stream.write_all(&too_long).unwrap();
    let mut rest = [0u8; 16];
    assert_eq!(
        stream.read(&mut rest).unwrap_or(0),
        0,
        "the connection closed"
    );
    let mut again = TcpStream::connect(addr).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut flush = Vec::new();
    requests[7].encode_length_delimited(&mut flush).unwrap();
    again.write_all(&flush).unwrap();
    let answers = read_responses(&mut again, 1);
    assert!(matches!(&answers[0].value, Some(response::Value::Flush(_))));
}
