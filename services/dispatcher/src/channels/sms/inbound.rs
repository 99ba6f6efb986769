//! Mobile-originated SMS: a `deliver_sm` that is not a receipt becomes an `inbound.sms` event
//! of the app whose bind received it, its text decoded by its `data_coding` ([`super::text`]).
//!
//! A concatenated message (a UDH's concatenation element with an 8- or 16-bit reference, or
//! the `sar_*` TLVs) is joined in Redis: each part goes into the HASH [`parts_key`], sequence →
//! `data_coding` and payload, kept [`PARTS_TTL`] after its latest part, so that parts may come
//! in any order on any bind of any dispatcher replica. One script keeps a part and counts the
//! parts in one step: only the caller whose part completes the message gets them all, joins
//! them (an escape or a surrogate pair may straddle two parts) and publishes the event.
//!
//! Nothing is lost: a part is acknowledged once Redis keeps it, and the part that completes a
//! message only once its event is confirmed by the broker; otherwise the answer is
//! `ESME_RX_T_APPN` and the SMSC sends the part again, which finds the others still waiting.
//! A published message's parts are deleted, so that its reference may serve a new message at
//! once. The event id is made of what makes the message itself (for a concatenated one its
//! addresses, reference, part count and text; for a single one the bytes of its PDU), so the
//! same message made twice (a part sent again while the first was being published) has the
//! same id, and the feed keeps it once.
//!
//! A whole text that is a STOP or START keyword ([`Keywords`]) changes the preferences of the
//! user who registered the sending number (`msisdn:{app}`, checked against their `sms`
//! endpoints) before the event is published, and the event says so (`keyword`, `user`,
//! `changed`); when the change cannot be stored the part is refused and comes again.

use std::sync::LazyLock;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use smpp34::deliver_sm;
use sprayer_shared::config::SmsSettings;
use sprayer_shared::model::{
    AppEvent, AppId, Channel, EventType, SmsEndpoint, StatusBatch, UserId, event_id, now_ms,
};
use sprayer_shared::personal::store;
use sprayer_shared::redis::{endpoints_key, msisdn_owner_key};

use super::receipts::BindListener;
use super::text;

/// `sar_msg_ref_num`: the reference shared by a message's parts (2 octets).
const TLV_SAR_MSG_REF_NUM: u16 = 0x020C;
/// `sar_total_segments`: how many parts (1 octet).
const TLV_SAR_TOTAL_SEGMENTS: u16 = 0x020E;
/// `sar_segment_seqnum`: which part, from 1 (1 octet).
const TLV_SAR_SEGMENT_SEQNUM: u16 = 0x020F;
/// `message_payload`: the message, in place of `short_message`.
const TLV_MESSAGE_PAYLOAD: u16 = 0x0424;
/// The `esm_class` bit saying that the message starts with a user data header.
const ESM_CLASS_UDH_INDICATOR: u8 = 0x40;
/// UDH element: concatenation with an 8-bit reference (reference, total, sequence).
const IE_CONCATENATION_8_BIT: u8 = 0x00;
/// UDH element: concatenation with a 16-bit reference (reference, total, sequence).
const IE_CONCATENATION_16_BIT: u8 = 0x08;
/// How long the parts of a message wait for the others after the latest came: a phone sends
/// its parts within seconds, an SMSC offers a refused part again for minutes.
pub const PARTS_TTL: Duration = Duration::from_secs(600);

/// Where a part belongs in a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concatenation {
    /// The reference its parts share.
    pub reference: u16,
    /// How many parts.
    pub total: u8,
    /// Which part, from 1.
    pub sequence: u8,
}

/// A mobile-originated `deliver_sm`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPart {
    /// The sender (`+` and digits for an international number).
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    /// How `payload` is encoded.
    pub data_coding: u8,
    /// Where it belongs, when it is a part of a longer message.
    pub concatenation: Option<Concatenation>,
    /// The text's bytes, without UDH.
    pub payload: Vec<u8>,
}

/// Splits a message that starts with a user data header into the header's concatenation
/// element (the first one, when there is one) and the payload after the header. A header
/// longer than the message takes it all.
pub fn split_udh(message: &[u8]) -> (Option<Concatenation>, &[u8]) {
    let Some((&length, rest)) = message.split_first() else {
        return (None, message);
    };
    let (mut elements, payload) = rest.split_at(usize::from(length).min(rest.len()));
    let mut concatenation = None;
    while let [id, length, tail @ ..] = elements {
        let (data, next) = tail.split_at(usize::from(*length).min(tail.len()));
        let found = match (*id, data) {
            (IE_CONCATENATION_8_BIT, &[reference, total, sequence]) => Some(Concatenation {
                reference: u16::from(reference),
                total,
                sequence,
            }),
            (IE_CONCATENATION_16_BIT, &[high, low, total, sequence]) => Some(Concatenation {
                reference: u16::from_be_bytes([high, low]),
                total,
                sequence,
            }),
            _ => None,
        };
        concatenation = concatenation.or(found);
        elements = next;
    }
    (concatenation, payload)
}

/// An address as the event gives it: an international one (TON 1) with its `+`.
fn address(ton: u8, address: &str) -> String {
    if ton == 1 && !address.is_empty() && !address.starts_with('+') {
        format!("+{address}")
    } else {
        address.to_owned()
    }
}

/// Reads a mobile-originated `deliver_sm`: the text from `message_payload` when it is there,
/// else from `short_message`; where it belongs from the `sar_*` TLVs, else from its UDH. A
/// concatenation that cannot be (one part, or a sequence out of its range) makes it a single
/// message.
pub fn parse_inbound(pdu: &deliver_sm) -> InboundPart {
    let tlv = |tag: u16| {
        pdu.tlvs
            .iter()
            .find(|tlv| tlv.tag == tag)
            .map(|tlv| tlv.value.as_slice())
    };
    let segmentation = match (
        tlv(TLV_SAR_MSG_REF_NUM),
        tlv(TLV_SAR_TOTAL_SEGMENTS),
        tlv(TLV_SAR_SEGMENT_SEQNUM),
    ) {
        (Some(&[high, low]), Some(&[total]), Some(&[sequence])) => Some(Concatenation {
            reference: u16::from_be_bytes([high, low]),
            total,
            sequence,
        }),
        _ => None,
    };
    let message = tlv(TLV_MESSAGE_PAYLOAD).unwrap_or(&pdu.short_message);
    let (header, payload) = if pdu.esm_class & ESM_CLASS_UDH_INDICATOR != 0 {
        split_udh(message)
    } else {
        (None, message)
    };
    InboundPart {
        from: address(pdu.source_addr_ton, &pdu.source_addr),
        to: address(pdu.dest_addr_ton, &pdu.destination_addr),
        data_coding: pdu.data_coding,
        concatenation: segmentation
            .or(header)
            .filter(|part| part.total > 1 && (1..=part.total).contains(&part.sequence)),
        payload: payload.to_vec(),
    }
}

/// The STOP and START keywords, upper-cased.
#[derive(Debug, Clone, Default)]
pub struct Keywords {
    stop: Vec<String>,
    start: Vec<String>,
}

impl Keywords {
    /// The keywords of the `[sms]` settings.
    pub fn new(settings: &SmsSettings) -> Keywords {
        let upper = |words: &[String]| {
            words
                .iter()
                .map(|word| word.trim().to_uppercase())
                .collect()
        };
        Keywords {
            stop: upper(&settings.stop_keywords),
            start: upper(&settings.start_keywords),
        }
    }

    /// `Some(false)` for a STOP, `Some(true)` for a START: the whole text, in any case, with
    /// surrounding spaces and trailing punctuation left out.
    pub fn read(&self, text: &str) -> Option<bool> {
        let word = text
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
            .to_uppercase();
        if self.stop.contains(&word) {
            Some(false)
        } else if self.start.contains(&word) {
            Some(true)
        } else {
            None
        }
    }
}

/// `smsmo:<app>:<from>:<to>:<reference>:<total>`: HASH of a concatenated message's parts,
/// sequence → `data_coding` octet and payload, until its event is published. Used alone, by
/// one script: no hash tag is needed on a cluster.
pub fn parts_key(app: &AppId, part: &InboundPart, concatenation: &Concatenation) -> String {
    format!(
        "smsmo:{app}:{}:{}:{}:{}",
        part.from, part.to, concatenation.reference, concatenation.total
    )
}

/// Keeps a part (`KEYS[1]` the message's HASH; `ARGV`: the sequence, the part, the message's
/// part count, the TTL in seconds) and answers with every part, as field-value pairs, when
/// the message has them all; else with nothing.
static KEEP_PART: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then return {} end
return redis.call('HGETALL', KEYS[1])
",
    )
});

/// Joins the field-value pairs [`KEEP_PART`] answered into the whole message, in sequence
/// order, with the `data_coding` of its first part; `None` unless they are parts 1 to `total`.
fn join(pairs: &[Vec<u8>], part: &InboundPart, total: u8) -> Option<InboundPart> {
    let mut parts: Vec<(u8, &[u8])> = pairs
        .chunks_exact(2)
        .filter_map(|pair| {
            let sequence = std::str::from_utf8(&pair[0]).ok()?.parse().ok()?;
            Some((sequence, pair[1].as_slice()))
        })
        .collect();
    parts.sort_unstable_by_key(|(sequence, _)| *sequence);
    let in_order = parts.iter().map(|(sequence, _)| *sequence).eq(1..=total);
    let (&data_coding, _) = parts.first()?.1.split_first()?;
    in_order.then(|| InboundPart {
        data_coding,
        payload: parts
            .iter()
            .flat_map(|(_, value)| value.get(1..).unwrap_or_default())
            .copied()
            .collect(),
        ..part.clone()
    })
}

/// The `inbound.sms` event of a whole `message` of `parts` parts received at `at` by the bind
/// of `connector`; `identity` is what tells it from another message with the same addresses
/// and text (its reference, or its PDU's bytes).
pub fn inbound_event(
    app: &AppId,
    connector: &str,
    message: &InboundPart,
    parts: u8,
    identity: &str,
    at: i64,
) -> AppEvent {
    let (text, encoding) = text::decode(message.data_coding, &message.payload);
    let kind = EventType::InboundSms;
    AppEvent {
        app: app.clone(),
        kind,
        id: event_id(&[
            kind.as_str(),
            app.as_str(),
            &message.from,
            &message.to,
            identity,
            &text,
        ]),
        at,
        data: json!({
            "from": message.from,
            "to": message.to,
            "text": text,
            "received_at": sprayer_shared::feed::rfc3339(sprayer_shared::mongo::date(at)),
            "connector": connector,
            "parts": parts,
            "encoding": encoding.as_str(),
        }),
    }
}

impl BindListener {
    /// Handles a mobile-originated `deliver_sm`; `false` when it should come again.
    pub(super) async fn inbound(&self, pdu: &deliver_sm) -> bool {
        let part = parse_inbound(pdu);
        let Some(concatenation) = part.concatenation else {
            let encoded = pdu.clone().encode();
            let body = encoded.get(16..).unwrap_or_default();
            return self.publish_inbound(&part, 1, &hex::encode(body)).await;
        };
        let key = parts_key(&self.app, &part, &concatenation);
        let whole = match self.keep_part(&key, &part, concatenation).await {
            Ok(Some(whole)) => whole,
            Ok(None) => return true,
            Err(error) => {
                tracing::warn!(%error, app = %self.app, "cannot keep an inbound SMS part; the SMSC will send it again");
                return false;
            }
        };
        let identity = format!("{}/{}", concatenation.reference, concatenation.total);
        if !self
            .publish_inbound(&whole, concatenation.total, &identity)
            .await
        {
            return false;
        }
        let mut redis = self.redis.clone();
        let deleted: redis::RedisResult<()> =
            redis::cmd("DEL").arg(&key).query_async(&mut redis).await;
        if let Err(error) = deleted {
            tracing::warn!(%error, app = %self.app, "cannot delete the parts of a published inbound SMS; they expire");
        }
        true
    }

    /// Keeps `part` of its message; the whole message when this part completed it.
    async fn keep_part(
        &self,
        key: &str,
        part: &InboundPart,
        concatenation: Concatenation,
    ) -> redis::RedisResult<Option<InboundPart>> {
        let mut value = Vec::with_capacity(1 + part.payload.len());
        value.push(part.data_coding);
        value.extend_from_slice(&part.payload);
        let mut redis = self.redis.clone();
        let pairs: Vec<Vec<u8>> = KEEP_PART
            .key(key)
            .arg(concatenation.sequence)
            .arg(value)
            .arg(concatenation.total)
            .arg(PARTS_TTL.as_secs())
            .invoke_async(&mut redis)
            .await?;
        if pairs.is_empty() {
            return Ok(None);
        }
        let whole = join(&pairs, part, concatenation.total);
        if whole.is_none() {
            tracing::warn!(app = %self.app, key, "the parts of an inbound SMS do not join; dropped");
        }
        Ok(whole)
    }

    /// The user whose `sms` endpoint has the number `from` (`+` and digits), if any.
    async fn owner_of(&self, from: &str) -> redis::RedisResult<Option<UserId>> {
        let number = if from.starts_with('+') {
            from.to_owned()
        } else {
            format!("+{from}")
        };
        let mut redis = self.redis.clone();
        let owner: Option<String> = redis.hget(msisdn_owner_key(&self.app), &number).await?;
        let Some(user) = owner.and_then(|owner| UserId::parse(owner).ok()) else {
            return Ok(None);
        };
        let addresses: Vec<String> = redis
            .hvals(endpoints_key(&self.app, &user, Channel::Sms))
            .await?;
        let holds = addresses.iter().any(|address| {
            serde_json::from_str::<SmsEndpoint>(address).is_ok_and(|sms| sms.msisdn == number)
        });
        Ok(holds.then_some(user))
    }

    /// Acts on a STOP (`on` false) or START from `from`: the user and what changed, in the
    /// event's data.
    async fn opt(
        &self,
        from: &str,
        on: bool,
        data: &mut serde_json::Value,
    ) -> redis::RedisResult<()> {
        let keyword = if on { "start" } else { "stop" };
        let owner = self.owner_of(from).await?;
        let changed = match &owner {
            Some(user) => {
                let mut redis = self.redis.clone();
                store::set_sms(&mut redis, &self.app, user, on).await?
            }
            None => Vec::new(),
        };
        let matched = if owner.is_some() { "true" } else { "false" };
        metrics::counter!("sprayer_sms_keywords_total", "keyword" => keyword, "matched" => matched)
            .increment(1);
        match &owner {
            Some(user) => tracing::info!(
                app = %self.app, %user, keyword, ?changed,
                "an SMS keyword changed a user's preferences"
            ),
            None => tracing::info!(
                app = %self.app, keyword,
                "an SMS keyword from a number no user registered"
            ),
        }
        data["keyword"] = json!(keyword);
        data["user"] = json!(owner.as_ref().map(UserId::as_str));
        data["changed"] = json!(changed);
        Ok(())
    }

    /// Publishes the event of a whole message; `false` when its last part should come again.
    async fn publish_inbound(&self, message: &InboundPart, parts: u8, identity: &str) -> bool {
        let mut event = inbound_event(
            &self.app,
            &self.system_id,
            message,
            parts,
            identity,
            now_ms(),
        );
        let keyword = event.data["text"]
            .as_str()
            .and_then(|text| self.keywords.read(text));
        if let Some(on) = keyword
            && let Err(error) = self.opt(&message.from, on, &mut event.data).await
        {
            tracing::warn!(%error, app = %self.app, "cannot act on an SMS keyword; the SMSC will send it again");
            return false;
        }
        let batch = StatusBatch {
            app_events: vec![event],
            steps: Vec::new(),
            ..StatusBatch::default()
        };
        let published = self.publish(&batch, "an inbound SMS").await;
        if published {
            metrics::counter!("sprayer_sms_inbound_total").increment(1);
            metrics::counter!("sprayer_sms_inbound_parts_total").increment(u64::from(parts));
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use smpp34::Tlv;

    use super::*;

    fn mobile_originated(esm_class: u8, data_coding: u8, short_message: &[u8]) -> deliver_sm {
        deliver_sm::new(
            1,
            String::new(),
            1,
            1,
            "31612345678".into(),
            3,
            0,
            "4455".into(),
            esm_class,
            0,
            0,
            String::new(),
            String::new(),
            0,
            0,
            data_coding,
            0,
            short_message.to_vec(),
        )
    }

    #[test]
    fn udh_concatenation_is_found_among_other_elements_with_either_reference() {
        let eight_bit = [0x05, 0x00, 0x03, 0x2A, 0x03, 0x02, b'h', b'i'];
        assert_eq!(
            split_udh(&eight_bit),
            (
                Some(Concatenation {
                    reference: 0x2A,
                    total: 3,
                    sequence: 2
                }),
                &b"hi"[..]
            )
        );
        // A port addressing element first, then a 16-bit reference.
        let sixteen_bit = [
            0x0C, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01, b'x',
        ];
        assert_eq!(
            split_udh(&sixteen_bit),
            (
                Some(Concatenation {
                    reference: 0x1234,
                    total: 2,
                    sequence: 1
                }),
                &b"x"[..]
            )
        );
        assert_eq!(split_udh(&[0x02, 0x00, 0x03]), (None, &[][..]), "cut short");
        assert_eq!(split_udh(&[]), (None, &[][..]));
    }

    #[test]
    fn sar_tlvs_and_message_payload_are_read_and_addresses_keep_their_plus() {
        let pdu = mobile_originated(0x00, text::DATA_CODING_GSM, b"").with_tlvs([
            Tlv::new(TLV_SAR_MSG_REF_NUM, vec![0x01, 0x02]),
            Tlv::new(TLV_SAR_TOTAL_SEGMENTS, vec![2]),
            Tlv::new(TLV_SAR_SEGMENT_SEQNUM, vec![2]),
            Tlv::new(TLV_MESSAGE_PAYLOAD, b"second".to_vec()),
        ]);
        assert_eq!(
            parse_inbound(&pdu),
            InboundPart {
                from: "+31612345678".into(),
                to: "4455".into(),
                data_coding: 0,
                concatenation: Some(Concatenation {
                    reference: 0x0102,
                    total: 2,
                    sequence: 2
                }),
                payload: b"second".to_vec(),
            }
        );
        let with_udh = mobile_originated(0x40, 8, &[0x05, 0x00, 0x03, 7, 2, 1, 0x00, 0x41]);
        let part = parse_inbound(&with_udh);
        assert_eq!(part.concatenation.map(|c| c.reference), Some(7));
        assert_eq!(part.payload, [0x00, 0x41]);
        let udh_unflagged = mobile_originated(0x00, 0, &[0x05, 0x00, 0x03, 7, 2, 1]);
        assert_eq!(parse_inbound(&udh_unflagged).concatenation, None);
        let out_of_range = mobile_originated(0x40, 0, &[0x05, 0x00, 0x03, 7, 2, 3, b'a']);
        assert_eq!(parse_inbound(&out_of_range).concatenation, None);
    }

    #[test]
    fn keywords_are_whole_texts_in_any_case() {
        let keywords = Keywords::new(&SmsSettings::default());
        assert_eq!(keywords.read("STOP"), Some(false));
        assert_eq!(keywords.read(" stop. "), Some(false));
        assert_eq!(keywords.read("Arret"), Some(false));
        assert_eq!(keywords.read("start!"), Some(true));
        assert_eq!(keywords.read("please stop"), None);
        assert_eq!(keywords.read("STOPPED"), None);
        let none = Keywords::new(&SmsSettings {
            stop_keywords: Vec::new(),
            start_keywords: Vec::new(),
            ..SmsSettings::default()
        });
        assert_eq!(none.read("STOP"), None);
    }

    #[test]
    fn parts_join_in_sequence_order_and_a_surrogate_pair_may_straddle_them() {
        let part = parse_inbound(&mobile_originated(0x40, 8, &[0x05, 0x00, 0x03, 9, 2, 2]));
        // "a👋" as UTF-16BE: 0061 D83D DC4B, cut inside the pair.
        let pairs = [
            b"2".to_vec(),
            vec![8, 0xDC, 0x4B],
            b"1".to_vec(),
            vec![8, 0x00, 0x61, 0xD8, 0x3D],
        ];
        let whole = join(&pairs, &part, 2).expect("both parts");
        let event = inbound_event(
            &AppId::parse("shop").expect("valid"),
            "shop",
            &whole,
            2,
            "9/2",
            0,
        );
        assert_eq!(event.kind, EventType::InboundSms);
        assert_eq!(event.data["text"], "a👋");
        assert_eq!(event.data["encoding"], "ucs2");
        assert_eq!(event.data["parts"], 2);
        assert_eq!(event.data["received_at"], "1970-01-01T00:00:00Z");
        let again = inbound_event(
            &AppId::parse("shop").expect("valid"),
            "shop",
            &whole,
            2,
            "9/2",
            5,
        );
        assert_eq!(event.id, again.id, "the same message has the same id");
        assert!(join(&pairs[..2], &part, 2).is_none(), "a part missing");
    }
}
