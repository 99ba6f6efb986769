//! The body of the fuzz target `smpp_pdu` (fuzz/fuzz_targets/smpp_pdu.rs), here so that a
//! normal test (tests/fuzz.rs) replays its seeds and past crashes at no build cost (`make fuzz`
//! fuzzes it).
//!
//! Bytes from an SMSC, through what the dispatcher's SMS channel does with them: framed into
//! PDUs by `command_length` as the SMPP client's read loop does, each PDU decoded by its
//! `command_id` as the client does for a transceiver bind, the answers the client encodes, and
//! then the dispatcher's own reading of what came: delivery receipts and mobile-originated
//! messages (`deliver_sm`: UDH, TLVs and text decoding) and `submit_sm_resp` (its status and
//! SMSC message id).
//!
//! The same bytes are also read as one PDU with its `command_length` set right, so that the
//! bodies' decoders see every input and not only those whose first four bytes happen to match
//! their length.

use crate::channels::sms::inbound::{inbound_event, parse_inbound, parts_key};
use crate::channels::sms::receipts::{parse_receipt, refusal};
use crate::channels::sms::{classify, receipt_key};
use crate::outcome::Outcome;
use smpp34::{
    CommandHeader, SmppError, alert_notification, bind_transceiver_resp, cancel_sm_resp, data_sm,
    data_sm_resp, deliver_sm, enquire_link, generic_nack, query_sm_resp, replace_sm_resp,
    submit_sm, submit_sm_multi_resp, submit_sm_resp, unbind_resp,
};
use sprayer_shared::model::AppId;

/// The SMPP client's bound on one PDU.
const MAX_PDU_LEN: usize = 1024 * 1024;

// Command ids (SMPP 3.4 §5.1.2.1; the client's own enum is private to it). An `unbind` from
// the SMSC is decoded by a function private to the client too, so it is left out.
const GENERIC_NACK: u32 = 0x8000_0000;
const QUERY_SM_RESP: u32 = 0x8000_0003;
const SUBMIT_SM_RESP: u32 = 0x8000_0004;
const DELIVER_SM: u32 = 0x0000_0005;
const UNBIND_RESP: u32 = 0x8000_0006;
const REPLACE_SM_RESP: u32 = 0x8000_0007;
const CANCEL_SM_RESP: u32 = 0x8000_0008;
const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;
const ENQUIRE_LINK: u32 = 0x0000_0015;
const SUBMIT_MULTI_RESP: u32 = 0x8000_0021;
const ALERT_NOTIFICATION: u32 = 0x0000_0102;
const DATA_SM: u32 = 0x0000_0103;
const DATA_SM_RESP: u32 = 0x8000_0103;

/// What the bind listener does with a `deliver_sm`, short of Redis and the broker.
fn on_deliver_sm(request: deliver_sm, app: &AppId) {
    // Receipts and mobile-originated messages are both read here: a receipt flag is one bit
    // away.
    if let Some(receipt) = parse_receipt(&request) {
        let key = receipt_key(app, &receipt.id);
        assert!(key.starts_with("smsid:"));
    }
    let part = parse_inbound(&request);
    if let Some(concatenation) = &part.concatenation {
        assert!(parts_key(app, &part, concatenation).starts_with("smsmo:"));
    }
    let event = inbound_event(app, "fuzz", &part, 1, "fuzz", 0);
    assert!(event.data["text"].is_string());
    let _ = request.clone().accept().encode();
    let _ = refusal(request, SmppError::ESME_RX_T_APPN).encode();
}

/// What `Sms::deliver` does with a `submit_sm_resp`, short of Redis.
fn on_submit_sm_resp(response: submit_sm_resp, app: &AppId) {
    if response.is_success() {
        let smsc_id = response.message_id.unwrap_or_default();
        if !smsc_id.is_empty() {
            let _ = receipt_key(app, &smsc_id);
        }
    } else {
        let status = response.command_status();
        match classify(status) {
            Outcome::Unregistered { error }
            | Outcome::Retry { error, .. }
            | Outcome::Failed { error } => assert!(error.contains("SMSC answered")),
            other => panic!("a refused submit_sm is not {other:?}"),
        }
        let _ = response.get_error();
    }
}

/// One PDU of exactly `pdu.len()` bytes, as the client's read loop handles it.
fn on_pdu(pdu: &[u8], app: &AppId) {
    let header = match CommandHeader::decode(pdu) {
        Ok(header) => header,
        Err(error) => {
            let _ = SmppError::from_command_status(error as u32);
            return;
        }
    };
    let sequence_number = header.sequence_number;
    let refused = |error: SmppError| {
        let _ = submit_sm::generic_reject(sequence_number, error).encode();
    };
    match header.command_id {
        DELIVER_SM => match deliver_sm::decode(header, pdu) {
            Ok(request) => on_deliver_sm(request, app),
            Err(error) => refused(error),
        },
        DATA_SM => match data_sm::decode(header, pdu) {
            Ok(request) => {
                let _ = request.reject(SmppError::ESME_RSYSERR).encode();
            }
            Err(error) => {
                let _ = data_sm::generic_reject(sequence_number, error).encode();
            }
        },
        SUBMIT_SM_RESP => match submit_sm_resp::decode(header, pdu) {
            Ok(response) => on_submit_sm_resp(response, app),
            Err(error) => refused(error),
        },
        ENQUIRE_LINK => match enquire_link::decode(header, pdu) {
            Ok(request) => {
                let _ = request.accept().encode();
            }
            Err(error) => refused(error),
        },
        UNBIND_RESP => {
            let _ = unbind_resp::decode(header, pdu).map(|response| response.get_error());
        }
        GENERIC_NACK => {
            let _ = generic_nack::decode(header, pdu).map(|nack| nack.get_error());
        }
        BIND_TRANSCEIVER_RESP => {
            let _ = bind_transceiver_resp::decode(header, pdu).map(|response| response.get_error());
        }
        ALERT_NOTIFICATION => {
            let _ = alert_notification::decode(header, pdu);
        }
        DATA_SM_RESP => {
            let _ = data_sm_resp::decode(header, pdu).map(|response| response.get_error());
        }
        SUBMIT_MULTI_RESP => {
            let _ = submit_sm_multi_resp::decode(header, pdu);
        }
        QUERY_SM_RESP => {
            let _ = query_sm_resp::decode(header, pdu);
        }
        REPLACE_SM_RESP => {
            let _ = replace_sm_resp::decode(header, pdu);
        }
        CANCEL_SM_RESP => {
            let _ = cancel_sm_resp::decode(header, pdu);
        }
        _ => {}
    }
}

/// A stream of bytes, framed as the client's read loop frames it.
fn on_stream(mut stream: &[u8], app: &AppId) {
    while stream.len() >= 16 {
        let length = u32::from_be_bytes([stream[0], stream[1], stream[2], stream[3]]) as usize;
        if !(16..=MAX_PDU_LEN).contains(&length) || stream.len() < length {
            // A bogus length closes the connection; a short one waits for more bytes.
            return;
        }
        let (pdu, rest) = stream.split_at(length);
        on_pdu(pdu, app);
        stream = rest;
    }
}

/// The fuzz target `smpp_pdu`: panics when `data` breaks a rule the code must keep.
pub fn smpp_pdu(data: &[u8]) {
    let Ok(app) = AppId::parse("app_fuzz") else {
        return;
    };
    on_stream(data, &app);
    if (16..=MAX_PDU_LEN).contains(&data.len()) {
        let mut pdu = data.to_vec();
        let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
        pdu[..4].copy_from_slice(&length.to_be_bytes());
        on_pdu(&pdu, &app);
    }
}
