// Where a device keeps its sync cursor across restarts (docs/protocol.md,
// section 5: "persist it across app restarts"). Pluggable: memory (tests,
// short-lived processes), localStorage (browsers), or anything with get/set.

export interface CursorStorage {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
}

/** Keeps values in this process only (shareable between Client instances). */
export class MemoryStorage implements CursorStorage {
  private readonly m = new Map<string, string>();
  get(key: string): string | null {
    return this.m.get(key) ?? null;
  }
  set(key: string, value: string): void {
    this.m.set(key, value);
  }
}

/** The subset of the Web Storage API LocalStorage needs. */
export interface WebStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Keeps values in window.localStorage (or any Web Storage). */
export class LocalStorage implements CursorStorage {
  private readonly s: WebStorageLike;
  private readonly prefix: string;
  constructor(storage?: WebStorageLike, prefix = "imcluster:") {
    const ls = storage ?? (globalThis as { localStorage?: WebStorageLike }).localStorage;
    if (!ls) throw new Error("LocalStorage: no localStorage in this environment");
    this.s = ls;
    this.prefix = prefix;
  }
  get(key: string): string | null {
    return this.s.getItem(this.prefix + key);
  }
  set(key: string, value: string): void {
    this.s.setItem(this.prefix + key, value);
  }
}
