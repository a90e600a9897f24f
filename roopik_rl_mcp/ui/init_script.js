// Installed with add_init_script, so it runs in every document before any of the page's own scripts.
// It reports through the Playwright binding it captured at that moment: a page that later sets
// window.onerror = () => true, calls preventDefault() or stopImmediatePropagation() in its own listeners,
// or replaces console.error cannot hide an error from it.
(() => {
  const send = window.__roopikEvent;
  if (typeof send !== "function") return;
  // Separate budgets, so that a flood of console.log cannot crowd an error out of the report.
  const BUDGET = { console: 400, error: 100 };
  const MAX_TEXT = 4000;
  const sent = { console: 0, error: 0 };
  let dropped = 0;
  const post = (kind, data) => {
    const budget = kind === "console" ? "console" : "error";
    if (sent[budget] >= BUDGET[budget]) { dropped += 1; return; }
    sent[budget] += 1;
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

  // console.log/info/warn/error/debug become accessors that always report, then call whatever the page
  // installed. They cannot be redefined (configurable: false); Object.defineProperty/defineProperties on
  // them (React's disableLogs does this while it builds component stacks) change what is called, not
  // the reporting; a page that replaces Object.defineProperty still cannot redefine them. Assigning the wrapper back (restoring a saved console.error) undoes the last change.
  const nativeConsole = console;
  const realDefineProperty = Object.defineProperty;
  const realDefineProperties = Object.defineProperties;
  const hooks = new Map();
  for (const level of ["log", "info", "warn", "error", "debug"]) {
    const native = nativeConsole[level];
    const saved = [];
    let current = native;
    let depth = 0;
    const wrapper = function (...args) {
      if (depth > 0) return native.apply(nativeConsole, args); // the page's replacement called the original
      depth += 1;
      try {
        // React's disableLogs() silences the console while it re-runs a component to find its stack
        // (the calls it makes then are duplicates, or "Invalid hook call" from its probe).
        if (current.__reactDisabledLog !== true) post("console", { level, text: format(args), stack: String(new Error().stack || "") });
        return current.apply(this, args);
      } finally {
        depth -= 1;
      }
    };
    const install = (value) => {
      if (value === wrapper) { current = saved.length ? saved.pop() : native; return; }
      if (saved.length < 64) saved.push(current);
      current = typeof value === "function" ? value : native;
    };
    hooks.set(level, install);
    realDefineProperty(nativeConsole, level, { get() { return wrapper; }, set: install, enumerable: true, configurable: false });
  }
  const redirect = (target, key, descriptor) => {
    if (target !== nativeConsole || !hooks.has(key) || !descriptor) return false;
    if ("value" in descriptor) hooks.get(key)(descriptor.value);
    else if (typeof descriptor.get === "function") hooks.get(key)(descriptor.get.call(target));
    return true;
  };
  realDefineProperty(Object, "defineProperty", {
    value: function defineProperty(target, key, descriptor) {
      return redirect(target, key, descriptor) ? target : realDefineProperty(target, key, descriptor);
    }, writable: true, configurable: true, enumerable: false, // patchable, as it is natively
  });
  realDefineProperty(Object, "defineProperties", {
    value: function defineProperties(target, descriptors) {
      if (target !== nativeConsole || descriptors === null || typeof descriptors !== "object")
        return realDefineProperties(target, descriptors);
      const rest = {};
      for (const key of Reflect.ownKeys(descriptors)) if (!redirect(target, key, descriptors[key])) rest[key] = descriptors[key];
      return realDefineProperties(target, rest);
    }, writable: true, configurable: true, enumerable: false, // patchable, as it is natively
  });
  realDefineProperty(window, "console", { value: nativeConsole, writable: false, configurable: false });
  realDefineProperty(window, "__roopikReport", {
    value: (_kind, data) => post("render", { message: clip(String(data.message || "")), stack: clip(String(data.stack || "")),
                                        componentStack: clip(String(data.componentStack || "")) }),
    writable: false, configurable: false, enumerable: false,
  });
  realDefineProperty(window, "__roopikDropped", { value: () => dropped, writable: false, configurable: false, enumerable: false });
})();
