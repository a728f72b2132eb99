// Where a device keeps its sync cursor across restarts (docs/protocol.md,
// section 5: "persist it across app restarts"). Pluggable: memory (tests,
// short-lived processes), localStorage (browsers), or anything with get/set.
/** Keeps values in this process only (shareable between Client instances). */
export class MemoryStorage {
    m = new Map();
    get(key) {
        return this.m.get(key) ?? null;
    }
    set(key, value) {
        this.m.set(key, value);
    }
}
/** Keeps values in window.localStorage (or any Web Storage). */
export class LocalStorage {
    s;
    prefix;
    constructor(storage, prefix = "imcluster:") {
        const ls = storage ?? globalThis.localStorage;
        if (!ls)
            throw new Error("LocalStorage: no localStorage in this environment");
        this.s = ls;
        this.prefix = prefix;
    }
    get(key) {
        return this.s.getItem(this.prefix + key);
    }
    set(key, value) {
        this.s.setItem(this.prefix + key, value);
    }
}
