// Installed with add_init_script, so it runs in every document before any of the page's own scripts.
// It reports through the Playwright binding it captured at that moment: a page that later sets
// window.onerror = () => true, calls preventDefault() or stopImmediatePropagation() in its own listeners,
// or replaces console.error cannot hide an error from it.
(() => {
  const send = window.__roopikEvent;
  if (typeof send !== "function") return;
  const MAX_EVENTS = 400;
  const MAX_TEXT = 4000;
  let sent = 0;
  let dropped = 0;
  const post = (kind, data) => {
    if (sent >= MAX_EVENTS) { dropped += 1; return; }
    sent += 1;
    try { send(kind, data); } catch (_) { dropped += 1; }
  };
  const clip = (text) => (text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) + "... (truncated)" : text);
  const show = (value) => {
    try {
      if (value instanceof Error) return value.stack || String(value);
      if (typeof value === "string") return value;
      if (typeof value === "function") return `[function ${value.name || "anonymous"}]`;
      if (value instanceof Node) return `<${(value.nodeName || "node").toLowerCase()}>`;
      if (typeof value === "object" && value !== null) return JSON.stringify(value) ?? String(value);
      return String(value);
    } catch (_) {
      try { return String(value); } catch (_) { return "[unprintable]"; }
    }
  };
  // Like the DevTools console: %s %d %i %f %o %O %j substitutions, %c dropped, the rest joined by spaces.
  const format = (args) => {
    if (!args.length) return "";
    let rest = args.slice(1);
    let text = typeof args[0] === "string" ? args[0].replace(/%([sdifoOjc%])/g, (match, code) => {
      if (code === "%") return "%";
      if (!rest.length) return match;
      const value = rest.shift();
      if (code === "c") return "";
      if (code === "d" || code === "i") return String(parseInt(value, 10));
      if (code === "f") return String(parseFloat(value));
      return show(value);
    }) : show(args[0]);
    for (const value of rest) text += " " + show(value);
    return clip(text);
  };
  const errorData = (error, fallback) => ({
    message: clip(error instanceof Error ? String(error.message) : show(error === undefined ? fallback : error)),
    stack: clip(error instanceof Error && error.stack ? String(error.stack) : ""),
    name: error instanceof Error ? error.name : "",
  });

  window.addEventListener("error", (event) => {
    if (!(event instanceof ErrorEvent)) return; // a resource that failed to load: reported as a failed response
    post("error", { ...errorData(event.error, event.message), url: event.filename || "", line: event.lineno || 0,
                    column: event.colno || 0 });
  }, true);
  window.addEventListener("unhandledrejection", (event) => {
    post("unhandledrejection", errorData(event.reason, "unhandled rejection"));
  }, true);

  const nativeConsole = console;
  for (const level of ["log", "info", "warn", "error", "debug"]) {
    const native = nativeConsole[level];
    let current = native;
    let depth = 0;
    const wrapper = function (...args) {
      if (depth > 0) return native.apply(nativeConsole, args); // the page's replacement called the original
      depth += 1;
      try {
        post("console", { level, text: format(args), stack: String(new Error().stack || "") });
        return current.apply(this, args);
      } finally {
        depth -= 1;
      }
    };
    Object.defineProperty(nativeConsole, level, {
      get() { return wrapper; },
      set(value) { current = typeof value === "function" ? value : native; },
      enumerable: true, configurable: false,
    });
  }
  Object.defineProperty(window, "console", { value: nativeConsole, writable: false, configurable: false });
  Object.defineProperty(window, "__roopikReport", {
    value: (_kind, data) => post("render", { message: clip(String(data.message || "")), stack: clip(String(data.stack || "")),
                                        componentStack: clip(String(data.componentStack || "")) }),
    writable: false, configurable: false, enumerable: false,
  });
  Object.defineProperty(window, "__roopikDropped", { value: () => dropped, writable: false, configurable: false, enumerable: false });
})();
