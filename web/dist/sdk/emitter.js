// A small typed event emitter (browsers and Node alike).
export class Emitter {
    handlers = new Map();
    /** Registers fn for name; returns a function that removes it. */
    on(name, fn) {
        let s = this.handlers.get(name);
        if (!s)
            this.handlers.set(name, (s = new Set()));
        s.add(fn);
        return () => this.off(name, fn);
    }
    off(name, fn) {
        this.handlers.get(name)?.delete(fn);
    }
    /** Resolves with the first arg of name for which pred holds, or rejects after timeoutMs. */
    waitFor(name, pred = () => true, timeoutMs = 30_000) {
        return new Promise((resolve, reject) => {
            const off = this.on(name, (a) => {
                if (!pred(a))
                    return;
                off();
                clearTimeout(t);
                resolve(a);
            });
            const t = setTimeout(() => { off(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${String(name)}`)); }, timeoutMs);
        });
    }
    emit(name, arg) {
        for (const fn of [...(this.handlers.get(name) ?? [])]) {
            try {
                fn(arg);
            }
            catch (e) {
                // A handler's bug must not break the connection loop.
                console.error(`imcluster sdk: ${String(name)} handler threw`, e);
            }
        }
    }
}
