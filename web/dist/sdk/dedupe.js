// Bounded memory of the events handed to the app (port of pkg/client's
// dedupe.go; docs/protocol.md section 5, "Bounded de-duplication memory"):
// an LRU of at most maxConvs conversations, each with its last WINDOW seqs
// above a floor, plus a fixed table of the highest seq of the conversations
// it forgot. Memory is sure when the conversation is remembered and the seq
// is above its floor; otherwise it cannot tell, and the caller hands the
// event on (never dropping what might be new).
export const WINDOW = 256;
const SKETCH = 4096;
export class Dedupe {
    maxConvs;
    // Map keeps insertion order: the first key is the least recently used.
    lru = new Map();
    evicted = new Array(SKETCH).fill(-1); // seq 0 is valid
    constructor(maxConvs = 1024) {
        this.maxConvs = maxConvs > 0 ? maxConvs : 1024;
    }
    /** seen is meaningful only when sure. */
    check(conv, seq) {
        const s = this.lru.get(conv);
        if (!s)
            return { seen: false, sure: seq > this.evicted[bucket(conv)] };
        if (seq <= s.floor)
            return { seen: false, sure: false };
        return { seen: search(s.seqs, seq).found, sure: true };
    }
    /** Records (conv, seq) as handed on and makes conv the most recent. */
    add(conv, seq) {
        let s = this.lru.get(conv);
        if (!s) {
            s = { floor: this.evicted[bucket(conv)], seqs: [] };
            this.lru.set(conv, s);
            while (this.lru.size > this.maxConvs) {
                const oldest = this.lru.keys().next().value;
                this.evict(oldest);
            }
        }
        else {
            this.lru.delete(conv);
            this.lru.set(conv, s);
        }
        if (seq <= s.floor)
            return;
        let { i, found } = search(s.seqs, seq);
        if (found)
            return;
        if (s.seqs.length === WINDOW) {
            const cut = WINDOW / 2; // keep the newer half
            s.floor = s.seqs[cut - 1];
            s.seqs = s.seqs.slice(cut);
            if (seq <= s.floor)
                return;
            i = search(s.seqs, seq).i;
        }
        s.seqs.splice(i, 0, seq);
    }
    evict(conv) {
        const s = this.lru.get(conv);
        this.lru.delete(conv);
        let hi = s.floor;
        if (s.seqs.length)
            hi = Math.max(hi, s.seqs[s.seqs.length - 1]);
        const b = bucket(conv);
        if (hi > this.evicted[b])
            this.evicted[b] = hi;
    }
}
function search(a, x) {
    let lo = 0, hi = a.length;
    while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return { i: lo, found: lo < a.length && a[lo] === x };
}
// FNV-1a over the UTF-16 code units.
function bucket(conv) {
    let h = 0x811c9dc5;
    for (let i = 0; i < conv.length; i++) {
        h ^= conv.charCodeAt(i);
        h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h % SKETCH;
}
