// An APNs stand-in for the tests: HTTP/2 over TLS, checks the ES256 provider token (signature,
// kid, iss, age), apns-topic and apns-push-type, and answers as APNs does. Device tokens choose
// the answer: "bad0…" 400 BadDeviceToken, "dead…" 410 Unregistered, "ba5e…" 429 once, "fa11…"
// 503 once, anything else 200. Every request is appended to LOG as one JSON line.
//
// With CLIENT_CA, connections may present a client certificate signed by it instead of a token
// (certificate authentication): its common name must be the topic.
//
// Usage: node apns_peer.js PORT CERT KEY PROVIDER_PUBLIC_KEY TEAM_ID KEY_ID TOPIC LOG [CLIENT_CA]
'use strict';
const http2 = require('http2');
const fs = require('fs');
const crypto = require('crypto');

const [port, certFile, keyFile, publicKeyFile, teamId, keyId, topic, logFile, clientCaFile] = process.argv.slice(2);
const publicKey = crypto.createPublicKey(fs.readFileSync(publicKeyFile));
const seen = new Map();
let sessions = 0;

function decode(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

function tokenProblem(authorization) {
  if (!authorization || !authorization.startsWith('bearer ')) return 'MissingProviderToken';
  const [header, claims, signature] = authorization.slice(7).split('.');
  if (!signature) return 'InvalidProviderToken';
  let parsedHeader, parsedClaims;
  try {
    parsedHeader = decode(header);
    parsedClaims = decode(claims);
  } catch (error) {
    return 'InvalidProviderToken';
  }
  if (parsedHeader.alg !== 'ES256' || parsedHeader.kid !== keyId || parsedClaims.iss !== teamId) {
    return 'InvalidProviderToken';
  }
  if (Math.abs(Date.now() / 1000 - parsedClaims.iat) > 3600) return 'ExpiredProviderToken';
  const valid = crypto.verify(
    'sha256',
    Buffer.from(`${header}.${claims}`),
    { key: publicKey, dsaEncoding: 'ieee-p1363' },
    Buffer.from(signature, 'base64url'),
  );
  return valid ? null : 'InvalidProviderToken';
}

const tls = { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
if (clientCaFile) Object.assign(tls, { requestCert: true, rejectUnauthorized: false, ca: fs.readFileSync(clientCaFile) });
const server = http2.createSecureServer(tls);

// The common name of a verified client certificate, or null.
function clientCertificate(session) {
  const socket = session.socket;
  if (!clientCaFile || !socket.authorized) return null;
  const certificate = socket.getPeerCertificate();
  return certificate && certificate.subject ? certificate.subject.CN : null;
}
server.on('session', (session) => {
  sessions += 1;
  session.sprayerId = sessions;
});
server.on('stream', (stream, headers) => {
  const chunks = [];
  stream.on('data', (chunk) => chunks.push(chunk));
  stream.on('end', () => {
    const path = headers[':path'] || '';
    const token = path.split('/').pop();
    const body = Buffer.concat(chunks).toString('utf8');
    const answer = (status, reason, extra = {}) => {
      const record = {
        token, status, reason: reason || null, session: stream.session.sprayerId,
        topic: headers['apns-topic'] || null, push_type: headers['apns-push-type'] || null,
        priority: headers['apns-priority'] || null, expiration: headers['apns-expiration'] || null,
        collapse_id: headers['apns-collapse-id'] || null, apns_id: headers['apns-id'] || null,
        client_certificate: clientCertificate(stream.session), authorization: headers.authorization ? 'bearer' : null,
        body: (() => { try { return JSON.parse(body); } catch (error) { return body; } })(),
      };
      fs.appendFileSync(logFile, JSON.stringify(record) + '\n');
      stream.respond({ ':status': status, 'apns-id': headers['apns-id'] || crypto.randomUUID(), ...extra });
      stream.end(reason ? JSON.stringify({ reason }) : '');
    };
    if (headers[':method'] !== 'POST' || !path.startsWith('/3/device/')) return answer(404, 'BadPath');
    const certified = clientCertificate(stream.session);
    if (certified !== null && certified !== topic) return answer(403, 'BadCertificateEnvironment');
    const problem = certified === topic ? null : tokenProblem(headers.authorization);
    if (problem) return answer(403, problem);
    if (headers['apns-topic'] !== topic) return answer(400, 'DeviceTokenNotForTopic');
    if (!['alert', 'background'].includes(headers['apns-push-type'])) return answer(400, 'InvalidPushType');
    const count = (seen.get(token) || 0) + 1;
    seen.set(token, count);
    if (token.startsWith('bad0')) return answer(400, 'BadDeviceToken');
    if (token.startsWith('dead')) return answer(410, 'Unregistered');
    if (token.startsWith('ba5e') && count === 1) return answer(429, 'TooManyRequests', { 'retry-after': '1' });
    if (token.startsWith('fa11') && count === 1) return answer(503, 'ServiceUnavailable');
    return answer(200);
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log('ready'));
