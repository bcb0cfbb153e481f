// wirehub-http.js — the HTTP fallback of wirehub.js (docs/PROTOCOL.md §14).
//
// wirehub.js imports this module, from beside itself, the first time a page
// needs the fallback (no WebSocket, or WebSockets that keep failing): pages
// whose WebSocket works never load it. An `HttpSocket` passes for the
// WebSocket the client would use: send(), close(), readyState, onopen,
// onmessage, onclose, and `kind` ("streaming" or "long-polling").
// Messages go out in POSTs, one at a time; records come in by long-polls,
// or by a stream while the path lets bytes through as they come. Records
// are WebSocket frames without a mask: opcode 1 text, 2 binary, 8 close, 9 ping.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function record(opcode, payload) {
  const n = payload.length;
  const size = n < 126 ? [n] : n < 65536 ? [126, n >> 8, n & 255] : [127, 0, 0, 0, 0, n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255];
  return new Blob([new Uint8Array([0x80 | opcode, ...size]), payload]);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One fallback session; `url` is the event endpoint's (ws: or http:). */
class HttpSocket {
  constructor(url, { token, stream }) {
    const base = new URL(url);
    this._query = base.search;
    base.search = "";
    this._base = base.href.replace(/^ws/, "http").replace(/\/$/, "");
    this.kind = stream && globalThis.ReadableStream ? "streaming" : "long-polling";
    this.readyState = 0;
    this._out = []; // records for the next POST
    this._seq = 0; // messages the server has
    this._ack = 0; // records we have
    this._sending = 0; // messages in the POST in flight
    // A closed tab cannot end its polls: say so, or it stays a member until the session
    // expires (Timeouts.session). The close POST is a keepalive fetch, so it outlives the page.
    this._left = () => this.close(1001, "page left");
    globalThis.addEventListener?.("pagehide", this._left);
    this._run(token);
  }

  send(data) {
    this._out.push(typeof data === "string" ? record(1, encoder.encode(data)) : record(2, data));
    this._post();
  }

  close(code = 1000, reason = "") {
    if (this.readyState === 1) {
      const body = record(8, new Uint8Array([code >> 8, code & 255]));
      this._fetch(`send?seq=${this._seq + this._sending}`, { method: "POST", body, keepalive: true }).catch(() => {});
    }
    this._end(code, reason);
  }

  _fetch(what, init) {
    const url = `${this._base}/${what}&session=${encodeURIComponent(this._session)}`;
    return fetch(url, { cache: "no-store", ...init, headers: { "Wirehub-Key": this._key } });
  }

  async _run(token) {
    try {
      const headers = token == null ? {} : { Authorization: `Bearer ${token}` };
      const response = await fetch(`${this._base}/open${this._query}`, { method: "POST", headers });
      const code = { 401: 4001, 403: 4003 }[response.status] || 1006; // final refusals are final
      if (response.status !== 200) return this._end(code, `HTTP ${response.status}`);
      ({ session: this._session, key: this._key } = await response.json());
    } catch (error) {
      return this._end(1006, "unreachable");
    }
    if (this.readyState) return undefined; // closed meanwhile
    this.readyState = 1;
    this._emit("open");
    this._post();
    for (let failures = 0; this.readyState === 1; ) {
      const abort = (this._abort = new AbortController());
      const stream = this.kind === "streaming";
      // A stream whose first bytes are held back (a buffering proxy) turns into polls.
      this._held = stream && setTimeout(() => ((this.kind = "long-polling"), abort.abort()), 2000);
      try {
        const response = await this._fetch(`poll?ack=${this._ack}${stream ? "&stream=1" : ""}`, { signal: abort.signal });
        if (response.status === 200 && stream) await this._stream(response.body.getReader());
        else if (response.status === 200) this._take(new Uint8Array(await response.arrayBuffer()));
        else if (response.status !== 204) this._refused(response.status);
        failures = 0;
        clearTimeout(this._held);
      } catch (error) {
        if (stream && this.kind !== "streaming") continue; // turned into polls: no failure
        if (++failures > 2) return this._end(1006, "connection lost");
        await sleep(250 * failures);
      }
    }
    return undefined;
  }

  async _stream(reader) {
    let rest = new Uint8Array(0);
    for (let chunk; !(chunk = await reader.read()).done; ) {
      clearTimeout(this._held);
      const bytes = new Uint8Array(rest.length + chunk.value.length);
      bytes.set(rest);
      bytes.set(chunk.value, rest.length);
      rest = this._take(bytes);
    }
  }

  /** Handle the whole records of `bytes`; return the rest. */
  _take(bytes) {
    const view = new DataView(bytes.buffer);
    let at = 0;
    while (bytes.length - at >= 2 && this.readyState === 1) {
      const short = bytes[at + 1] & 127;
      const head = short < 126 ? 2 : short < 127 ? 4 : 10;
      if (bytes.length - at < head) break;
      const n = head === 2 ? short : head === 4 ? view.getUint16(at + 2) : view.getUint32(at + 6);
      if (bytes.length - at < head + n) break;
      const opcode = bytes[at] & 15;
      const payload = bytes.slice(at + head, (at += head + n));
      if (opcode === 9) continue;
      this._ack++;
      if (opcode === 8) this._end(n > 1 ? (payload[0] << 8) | payload[1] : 1005, decoder.decode(payload.subarray(2)));
      else this._emit("message", { data: opcode === 1 ? decoder.decode(payload) : payload.buffer });
    }
    return bytes.slice(at);
  }

  async _post() {
    if (this._sending || !this._out.length || this.readyState !== 1) return;
    const batch = this._out.splice(0);
    this._sending = batch.length;
    for (let failures = 0; this.readyState === 1; ) {
      try {
        const response = await this._fetch(`send?seq=${this._seq}`, { method: "POST", body: new Blob(batch) });
        if (response.status !== 204) this._refused(response.status);
        this._seq += batch.length;
        break;
      } catch (error) {
        if (++failures > 2) return this._end(1006, "connection lost");
        await sleep(250 * failures);
      }
    }
    this._sending = 0;
    this._post();
  }

  /** An error answer: a proxy's 5xx is thrown (tried again); the rest end the session. */
  _refused(status) {
    if (status > 499) throw new Error(status);
    this._end({ 410: 1006, 413: 1009 }[status] || 1002, `HTTP ${status}`);
  }

  _end(code, reason) {
    if (this.readyState > 1) return;
    this.readyState = 3;
    globalThis.removeEventListener?.("pagehide", this._left);
    if (this._abort) this._abort.abort();
    this._emit("close", { code, reason });
  }

  _emit(type, fields) {
    if (this[`on${type}`]) this[`on${type}`]({ type, ...fields });
  }
}

export { HttpSocket };
