//! The bind's listener: follows the bind's state and turns delivery receipts (`deliver_sm`
//! with `esm_class` 0x04) into `delivered` or `failed` events, matched through the SMSC ids
//! kept in Redis; a `deliver_sm` of the default type is a mobile-originated message
//! ([`super::inbound`]). A receipt is acknowledged only once its event is confirmed by the
//! broker, so the SMSC sends it again if anything fails on the way.

use std::sync::Arc;

use async_trait::async_trait;
use smpp34::client::{SMSC, SmppClientListener};
use smpp34::{CommandHeader, SmppConnectionInformation, SmppError, deliver_sm, deliver_sm_resp};
use sprayer_shared::amqp::Publisher;
use sprayer_shared::model::{
    AppId, Channel, DeliveryEvent, DeliveryStatus, DeviceId, MessageId, StatusBatch, UserId, now_ms,
};
use sprayer_shared::redis::RedisConnection;
use tokio::sync::watch;

use super::{ReceiptTarget, receipt_key};

/// `receipted_message_id`.
const TLV_RECEIPTED_MESSAGE_ID: u16 = 0x001E;
/// `message_state`.
const TLV_MESSAGE_STATE: u16 = 0x0427;
/// The `esm_class` bits of a `deliver_sm`'s message type.
const ESM_CLASS_MESSAGE_TYPE: u8 = 0x3C;
/// Message type: a message a phone sent (mobile-originated).
const ESM_CLASS_DEFAULT: u8 = 0x00;
/// Message type: an SMSC delivery receipt.
const ESM_CLASS_RECEIPT: u8 = 0x04;

/// The listener of one app account's bind.
pub struct BindListener {
    /// The app whose account this is.
    pub app: AppId,
    /// The account's `system_id`: the connector that inbound messages name.
    pub system_id: String,
    /// Where the bound SMSC handle is published.
    pub bound: watch::Sender<Option<Arc<SMSC>>>,
    /// Counts the binds that dropped or failed; a change wakes the bind keeper.
    pub drops: watch::Sender<u64>,
    /// For the SMSC id → delivery map.
    pub redis: RedisConnection,
    /// For the events.
    pub publisher: Arc<Publisher>,
    /// The STOP and START keywords.
    pub keywords: Arc<super::inbound::Keywords>,
}

/// What a receipt says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The SMSC id of the part.
    pub id: String,
    /// `DELIVRD`, `UNDELIV`, `EXPIRED`, ...
    pub state: String,
}

/// Reads a receipt from the TLVs, else from the text (`id:... stat:...`).
pub fn parse_receipt(pdu: &deliver_sm) -> Option<Receipt> {
    let text = String::from_utf8_lossy(&pdu.short_message);
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .map(str::to_owned)
    };
    let tlv = |tag: u16| {
        pdu.tlvs
            .iter()
            .find(|tlv| tlv.tag == tag)
            .map(|tlv| tlv.value.clone())
    };
    let id = tlv(TLV_RECEIPTED_MESSAGE_ID)
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .trim_end_matches('\0')
                .to_owned()
        })
        .filter(|id| !id.is_empty())
        .or_else(|| field("id:"))?;
    let state = match tlv(TLV_MESSAGE_STATE).and_then(|bytes| bytes.first().copied()) {
        Some(1) => "ENROUTE".to_owned(),
        Some(2) => "DELIVRD".to_owned(),
        Some(3) => "EXPIRED".to_owned(),
        Some(4) => "DELETED".to_owned(),
        Some(5) => "UNDELIV".to_owned(),
        Some(6) => "ACCEPTD".to_owned(),
        Some(8) => "REJECTD".to_owned(),
        _ => field("stat:").unwrap_or_else(|| "UNKNOWN".into()),
    };
    Some(Receipt { id, state })
}

/// The answer refusing `request` with `error`, so that the SMSC sends it again. The client's own
/// `reject` says 16 octets but writes 17 (it always adds the empty `message_id`): the extra
/// octet throws the SMSC's framing off until the bind drops (with the tests' simulator, the
/// next PDU went unanswered for 30 s). This answer says the 17 octets it writes.
pub fn refusal(request: deliver_sm, error: SmppError) -> deliver_sm_resp {
    let rejected = request.reject(error);
    let written = rejected.clone().encode();
    let header = written
        .get(..16)
        .and_then(|head| CommandHeader::decode(head).ok());
    let (Some(mut header), Ok(length)) = (header, u32::try_from(written.len())) else {
        return rejected;
    };
    header.command_length = length;
    deliver_sm_resp::decode(header, &written).unwrap_or(rejected)
}

impl BindListener {
    /// The delivery of an SMSC id. A receipt can overtake the write of its id (it may come
    /// moments after the `submit_sm_resp`), so a missing id is looked up again for a while.
    async fn lookup(&self, smsc_id: &str) -> redis::RedisResult<Option<String>> {
        let mut redis = self.redis.clone();
        let key = receipt_key(&self.app, smsc_id);
        for _ in 0..10 {
            let found: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await?;
            if found.is_some() {
                return Ok(found);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Ok(None)
    }

    /// Handles a receipt; `false` when it should come again.
    async fn receipt(&self, receipt: Receipt) -> bool {
        let status = match receipt.state.as_str() {
            "DELIVRD" => DeliveryStatus::Delivered,
            "ENROUTE" | "ACCEPTD" | "UNKNOWN" => return true,
            _ => DeliveryStatus::Failed,
        };
        let found = self.lookup(&receipt.id).await;
        let target: ReceiptTarget = match found {
            Ok(Some(value)) => match serde_json::from_str(&value) {
                Ok(target) => target,
                Err(_) => return true,
            },
            Ok(None) => {
                tracing::debug!(app = %self.app, smsc_id = %receipt.id, "receipt for an unknown or forgotten SMSC id");
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot look up a receipt's SMSC id; the SMSC will send it again");
                return false;
            }
        };
        let (Ok(message), Ok(user), Ok(device)) = (
            MessageId::parse(target.message),
            UserId::parse(target.user),
            DeviceId::parse(target.device),
        ) else {
            return true;
        };
        let event = DeliveryEvent {
            app: self.app.clone(),
            message,
            channel: Channel::Sms,
            user,
            device,
            status,
            attempt: target.attempt,
            error: (status == DeliveryStatus::Failed)
                .then(|| format!("SMSC receipt: {}", receipt.state)),
            code: Some(receipt.state.clone()),
            at: now_ms(),
        };
        metrics::counter!("sprayer_deliveries_total", "channel" => "sms", "status" => status.as_str()).increment(1);
        let batch = StatusBatch {
            deliveries: vec![event],
            ..StatusBatch::default()
        };
        self.publish(&batch, "a receipt").await
    }

    /// Publishes `batch` (the event of `what`, for the log) on the status exchange and waits
    /// for the broker's confirm; `false` when the SMSC should send its PDU again. A batch that
    /// cannot be serialized never will be: it counts as handled.
    pub(super) async fn publish(&self, batch: &StatusBatch, what: &str) -> bool {
        let Ok(outgoing) = self.publisher.topology().status_message(batch) else {
            return true;
        };
        match self.publisher.publish(outgoing).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, of = what, "cannot publish an event; the SMSC will send its PDU again");
                false
            }
        }
    }
}

#[async_trait]
impl SmppClientListener for BindListener {
    async fn on_smsc_bound(&self, smsc: SMSC, _session_id: &String) {
        tracing::info!(app = %self.app, system_id = %smsc.system_id, "SMPP bound");
        self.bound.send_replace(Some(Arc::new(smsc)));
    }

    async fn on_smsc_unbound(&self, _session_id: &String) {
        self.bound.send_replace(None);
        self.drops.send_modify(|drops| *drops += 1);
    }

    async fn on_connection_failed(&self, error: &str) {
        tracing::warn!(app = %self.app, error, "SMPP connection failed");
        self.bound.send_replace(None);
        self.drops.send_modify(|drops| *drops += 1);
    }

    async fn on_deliver_sm(
        &self,
        request: deliver_sm,
        _connection: &SmppConnectionInformation,
        _session_id: &String,
    ) -> deliver_sm_resp {
        let handled = match request.esm_class & ESM_CLASS_MESSAGE_TYPE {
            ESM_CLASS_DEFAULT => self.inbound(&request).await,
            ESM_CLASS_RECEIPT => match parse_receipt(&request) {
                Some(receipt) => self.receipt(receipt).await,
                None => true,
            },
            // SME acknowledgements and intermediate notifications: not used by Sprayer,
            // acknowledged so that they are not sent again.
            _ => true,
        };
        if handled {
            request.accept()
        } else {
            refusal(request, SmppError::ESME_RX_T_APPN)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_the_length_it_writes_and_keeps_the_sequence_number() {
        let request = deliver_sm::new(
            42,
            String::new(),
            1,
            1,
            "31600000000".into(),
            1,
            1,
            "15550001".into(),
            0,
            0,
            0,
            String::new(),
            String::new(),
            0,
            0,
            0,
            0,
            b"hi".to_vec(),
        );
        let written = refusal(request, SmppError::ESME_RX_T_APPN).encode();
        let length = u32::from_be_bytes([written[0], written[1], written[2], written[3]]);
        assert_eq!(usize::try_from(length), Ok(written.len()));
        assert_eq!(
            &written[4..16],
            &[0x80, 0, 0, 0x05, 0, 0, 0, 0x64, 0, 0, 0, 42],
            "deliver_sm_resp, ESME_RX_T_APPN, the request's sequence number"
        );
    }
}
