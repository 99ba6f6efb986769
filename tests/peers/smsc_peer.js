// An SMPP 3.4 SMSC stand-in for the tests (npm `smpp` 0.5.1). It accepts one account, logs
// every submit_sm and sends delivery receipts, and it keeps its unsent receipts in STATE_FILE
// so a new process started after a SIGKILL sends them. Destinations (a leading '+' ignored)
// choose the answer: "999…" ESME_RINVDSTADR, "888…" ESME_RTHROTTLED the first time, "777…"
// accepted, but the receipt says UNDELIV. Anything else is accepted and delivered.
// Mobile-originated messages: each line appended to `${STATE_FILE}.mo` (one JSON object a line,
// read every 100 ms) is sent as a deliver_sm to a bound receiver or transceiver (of
// `system_id` when the line names one), and again after RECEIPT_DELAY_MS while it is refused:
// source_addr, destination_addr, data_coding, esm_class, short_message (hex), and optionally
// source_addr_ton, dest_addr_ton (1 by default), message_payload (hex), sar_msg_ref_num,
// sar_total_segments, sar_segment_seqnum.
// Events are appended to LOG_FILE as JSON lines: kind "submit", "receipt" or "mo" (with the
// command_status of the deliver_sm_resp).
//
// Usage: node smsc_peer.js PORT STATE_FILE LOG_FILE SYSTEM_ID PASSWORD [RECEIPT_DELAY_MS]
'use strict';
const fs = require('fs');
const smpp = require('smpp');

const [port, stateFile, logFile, systemId, password, delayArg] = process.argv.slice(2);
const DELAY = Number(delayArg || 100);
const START = Date.now(); // message ids are `${START}-${n}`: unique across restarts
let counter = 0;

// The library decodes short_message (and message_payload) into {udh: [IE...], message: string}
// through the text encodings, which loses the UDH length byte and any byte the GSM table does
// not know. Without the decode filters these fields stay as the raw Buffer from the wire.
delete smpp.commands.submit_sm.params.short_message.filter;
delete smpp.tlvs.message_payload.filter;

// The state: receipts and mobile-originated messages not yet acknowledged by a deliver_sm_resp,
// how many lines of the MO file were taken, and the "888" numbers already throttled once. It is
// rewritten whole (and atomically) on every change.
const state = { receipts: [], throttled: [], mo: [], moLines: 0 };
try {
  Object.assign(state, JSON.parse(fs.readFileSync(stateFile, 'utf8')));
} catch (error) {
  if (error.code !== 'ENOENT') throw error;
}
for (const receipt of state.receipts) receipt.due = START + DELAY; // left over from a killed run
for (const mo of state.mo) mo.due = START;
function save() {
  fs.writeFileSync(`${stateFile}.tmp`, JSON.stringify(state));
  fs.renameSync(`${stateFile}.tmp`, stateFile);
}
save();

function log(event) {
  fs.appendFileSync(logFile, JSON.stringify(event) + '\n');
}

// YYMMDDhhmm (UTC), as in the receipt text.
function stamp(ms) {
  return new Date(ms).toISOString().replace(/[-T:]/g, '').slice(2, 12);
}

// The concatenation IE of a UDH: 0x00 (8-bit reference) or 0x08 (16-bit reference).
function parseUdh(bytes) {
  if (bytes.length === 0) return null;
  const end = Math.min(1 + bytes[0], bytes.length);
  for (let at = 1; at + 2 <= end; at += 2 + bytes[at + 1]) {
    const [id, length] = [bytes[at], bytes[at + 1]];
    const data = bytes.subarray(at + 2, at + 2 + length);
    if (id === 0x00 && data.length === 3) return { ref: data[0], total: data[1], seq: data[2] };
    if (id === 0x08 && data.length === 4) return { ref: data.readUInt16BE(0), total: data[2], seq: data[3] };
  }
  return null;
}

const server = smpp.createServer();
const inflight = new Map(); // message_id or MO id → the session its deliver_sm went to (awaiting resp)
const origin = new Map(); // message_id → the session that submitted it (this process only)
let timer = null;

function canReceive(session) {
  return !session.closed && (session.bound === 'transceiver' || session.bound === 'receiver');
}

// Sends every due receipt that has a bound session to go to, and wakes up for the next one.
function pump() {
  clearTimeout(timer);
  const now = Date.now();
  let next = Infinity;
  for (const receipt of state.receipts) {
    if (inflight.has(receipt.message_id)) continue;
    if (receipt.due > now) {
      next = Math.min(next, receipt.due);
      continue;
    }
    const first = origin.get(receipt.message_id);
    const session = first && canReceive(first) ? first
      : server.sessions.find((s) => canReceive(s) && s.system_id === receipt.system_id);
    if (session) send(session, receipt); // otherwise it waits for a bind
  }
  for (const mo of state.mo) {
    if (inflight.has(mo.id)) continue;
    if (mo.due > now) {
      next = Math.min(next, mo.due);
      continue;
    }
    const session = server.sessions.find((s) => canReceive(s) && (!mo.system_id || s.system_id === mo.system_id));
    if (session) sendMo(session, mo);
  }
  if (next !== Infinity) timer = setTimeout(pump, next - now);
}

function send(session, receipt) {
  const text = `id:${receipt.message_id} sub:001 dlvrd:001 submit date:${stamp(receipt.submitted)} ` +
    `done date:${stamp(Date.now())} stat:${receipt.stat} err:${receipt.err} text:`;
  const pdu = new smpp.PDU('deliver_sm', {
    source_addr_ton: receipt.source_addr_ton, source_addr_npi: receipt.source_addr_npi,
    source_addr: receipt.source_addr,
    dest_addr_ton: receipt.dest_addr_ton, dest_addr_npi: receipt.dest_addr_npi,
    destination_addr: receipt.destination_addr,
    esm_class: 0x04, data_coding: 0,
    short_message: Buffer.from(text, 'ascii'), // a Buffer is sent as is, never re-encoded
    receipted_message_id: receipt.message_id, // TLV 0x001E, a C-octet string
    message_state: receipt.message_state, // TLV 0x0427, one octet
  });
  inflight.set(receipt.message_id, session);
  session.send(pdu, (resp) => {
    inflight.delete(receipt.message_id);
    if (resp.command_status === 0) {
      state.receipts = state.receipts.filter((r) => r.message_id !== receipt.message_id);
      origin.delete(receipt.message_id);
      save();
    } else {
      receipt.due = Date.now() + DELAY; // refused: offered again later
    }
    pump();
  });
  log({ kind: 'receipt', system_id: receipt.system_id, message_id: receipt.message_id, stat: receipt.stat });
}

function sendMo(session, mo) {
  const params = {
    source_addr_ton: mo.source_addr_ton ?? 1, source_addr_npi: 1, source_addr: mo.source_addr,
    dest_addr_ton: mo.dest_addr_ton ?? 1, dest_addr_npi: 1, destination_addr: mo.destination_addr,
    esm_class: mo.esm_class || 0, data_coding: mo.data_coding || 0,
    short_message: Buffer.from(mo.short_message || '', 'hex'), // a Buffer: sent as is
  };
  if (mo.message_payload !== undefined) params.message_payload = Buffer.from(mo.message_payload, 'hex');
  for (const tlv of ['sar_msg_ref_num', 'sar_total_segments', 'sar_segment_seqnum']) {
    if (mo[tlv] !== undefined) params[tlv] = mo[tlv];
  }
  inflight.set(mo.id, session);
  session.send(new smpp.PDU('deliver_sm', params), (resp) => {
    inflight.delete(mo.id);
    log({
      kind: 'mo', id: mo.id, system_id: session.system_id, source_addr: mo.source_addr,
      destination_addr: mo.destination_addr, sar_segment_seqnum: mo.sar_segment_seqnum,
      short_message: mo.short_message, command_status: resp.command_status,
    });
    if (resp.command_status === 0) {
      state.mo = state.mo.filter((m) => m.id !== mo.id);
      save();
    } else {
      mo.due = Date.now() + DELAY; // refused: offered again later, as an SMSC does
    }
    pump();
  });
}

// Takes the whole lines appended to the MO file since the last look.
function readMo() {
  let text;
  try {
    text = fs.readFileSync(`${stateFile}.mo`, 'utf8');
  } catch (error) {
    if (error.code === 'ENOENT') return;
    throw error;
  }
  const lines = text.split('\n').slice(0, -1); // the last one may be half written
  if (lines.length <= state.moLines) return;
  for (let index = state.moLines; index < lines.length; index++) {
    if (lines[index].trim()) state.mo.push({ ...JSON.parse(lines[index]), id: `mo-${index}`, due: 0 });
  }
  state.moLines = lines.length;
  save();
  pump();
}

function onSubmit(session, pdu) {
  const destination = pdu.destination_addr.replace(/^\+/, '');
  let status = smpp.ESME_ROK;
  if (session.bound !== 'transmitter' && session.bound !== 'transceiver') status = smpp.ESME_RINVBNDSTS;
  else if (destination.startsWith('999')) status = smpp.ESME_RINVDSTADR;
  else if (destination.startsWith('888') && !state.throttled.includes(destination)) {
    status = smpp.ESME_RTHROTTLED;
    state.throttled.push(destination);
    save();
  }
  const messageId = status === 0 ? `${START}-${++counter}` : null;
  const raw = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
  log({
    kind: 'submit', system_id: session.system_id || null, message_id: messageId, status,
    source_addr: pdu.source_addr, destination_addr: pdu.destination_addr,
    data_coding: pdu.data_coding, esm_class: pdu.esm_class, registered_delivery: pdu.registered_delivery,
    short_message: raw.toString('hex'),
    message_payload: Buffer.isBuffer(pdu.message_payload) ? pdu.message_payload.toString('hex') : undefined,
    udh: pdu.esm_class & 0x40 ? parseUdh(raw) : null,
  });
  if (status === 0 && pdu.registered_delivery & 1) {
    const failed = destination.startsWith('777');
    state.receipts.push({
      message_id: messageId, system_id: session.system_id, submitted: Date.now(), due: Date.now() + DELAY,
      source_addr: pdu.destination_addr, source_addr_ton: pdu.dest_addr_ton, source_addr_npi: pdu.dest_addr_npi,
      destination_addr: pdu.source_addr, dest_addr_ton: pdu.source_addr_ton, dest_addr_npi: pdu.source_addr_npi,
      stat: failed ? 'UNDELIV' : 'DELIVRD', err: failed ? '001' : '000', message_state: failed ? 5 : 2,
    });
    origin.set(messageId, session);
    save(); // before the answer: a SIGKILL after submit_sm_resp cannot lose the receipt
  }
  // With a non-zero command_status the library sends the header alone (no message_id).
  session.send(pdu.response(status === 0 ? { message_id: messageId } : { command_status: status }));
  pump();
}

const HANDLED = ['bind_transceiver', 'bind_transmitter', 'bind_receiver', 'submit_sm', 'enquire_link', 'unbind'];
server.on('session', (session) => {
  session.bound = null;
  session.on('error', () => session.destroy());
  session.on('close', () => {
    session.closed = true;
    for (const [id, target] of inflight) if (target === session) inflight.delete(id);
    pump();
  });
  for (const mode of ['transceiver', 'transmitter', 'receiver']) {
    session.on(`bind_${mode}`, (pdu) => {
      let status = smpp.ESME_ROK;
      if (session.bound) status = smpp.ESME_RALYBND;
      else if (pdu.system_id !== systemId) status = smpp.ESME_RBINDFAIL;
      else if (pdu.password !== password) status = smpp.ESME_RINVPASWD;
      if (status !== 0) {
        session.send(pdu.response({ command_status: status }), () => session.bound || session.close());
        return;
      }
      session.bound = mode;
      session.system_id = pdu.system_id;
      session.send(pdu.response({ system_id: 'SMSC' }));
      pump(); // receipts waiting for a bind (e.g. from before a restart)
    });
  }
  session.on('submit_sm', (pdu) => onSubmit(session, pdu));
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.bound = null;
    session.send(pdu.response(), () => session.close());
  });
  session.on('pdu', (pdu) => { // any other request: ESME_RINVCMDID (generic_nack if unknown)
    if (!pdu.isResponse() && !HANDLED.includes(pdu.command)) {
      session.send(pdu.response({ command_status: smpp.ESME_RINVCMDID }));
    }
  });
});

server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write('ready\n');
  pump();
  setInterval(readMo, 100);
});
