// A small typed event emitter (browsers and Node alike).

export class Emitter<M> {
  private readonly handlers = new Map<keyof M, Set<(arg: never) => void>>();

  /** Registers fn for name; returns a function that removes it. */
  on<K extends keyof M>(name: K, fn: (arg: M[K]) => void): () => void {
    let s = this.handlers.get(name);
    if (!s) this.handlers.set(name, (s = new Set()));
    s.add(fn as (arg: never) => void);
    return () => this.off(name, fn);
  }

  off<K extends keyof M>(name: K, fn: (arg: M[K]) => void): void {
    this.handlers.get(name)?.delete(fn as (arg: never) => void);
  }

  /** Resolves with the first arg of name for which pred holds, or rejects after timeoutMs. */
  waitFor<K extends keyof M>(name: K, pred: (arg: M[K]) => boolean = () => true, timeoutMs = 30_000): Promise<M[K]> {
    return new Promise((resolve, reject) => {
      const off = this.on(name, (a) => {
        if (!pred(a)) return;
        off();
        clearTimeout(t);
        resolve(a);
      });
      const t = setTimeout(() => { off(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${String(name)}`)); }, timeoutMs);
    });
  }

  protected emit<K extends keyof M>(name: K, arg: M[K]): void {
    for (const fn of [...(this.handlers.get(name) ?? [])]) {
      try {
        (fn as (a: M[K]) => void)(arg);
      } catch (e) {
        // A handler's bug must not break the connection loop.
        console.error(`imcluster sdk: ${String(name)} handler threw`, e);
      }
    }
  }
}
