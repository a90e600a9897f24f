// The UI build worker: one long-lived Node process that bundles components with esbuild's JS API and
// generates their Tailwind v4 CSS, so neither tool pays its start-up (~0.3 s esbuild CLI, ~0.6 s Tailwind CLI)
// on every capture. It reads one JSON request per line on stdin and writes one JSON answer per line on
// stdout ({id, ...}); requests run concurrently. It never touches the network and never executes the code
// it builds: the code arrives as a string and leaves as a bundle.
//
// The packages a component may import are bundled once into "vendor" scripts (one per package group) that
// register their modules in globalThis.__roopikModules; a component's bundle reads them from there, so a
// component build bundles a few kilobytes instead of React (~0.2 s warm for React alone).

import { createRequire } from "node:module";
import { builtinModules } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const RUNTIME_DIR = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(RUNTIME_DIR, "package.json"));
const esbuild = require("esbuild");
const { compile: compileTailwind } = require("@tailwindcss/node");
const { Scanner } = require("@tailwindcss/oxide");

const PACKAGE = JSON.parse(readFileSync(path.join(RUNTIME_DIR, "package.json"), "utf8"));
const TOOLS = new Set(["esbuild", "tailwindcss", "@tailwindcss/cli", "@tailwindcss/node", "@tailwindcss/oxide"]);
/** Packages a component may import: the runtime's dependencies that are not build tools. */
const AVAILABLE = Object.keys(PACKAGE.dependencies).filter((name) => !TOOLS.has(name)).sort();

/** Vendor groups: the specifiers each vendor script registers. */
const GROUPS = {
  react: ["react", "react/jsx-runtime", "react/jsx-dev-runtime", "react-dom", "react-dom/client"],
  clsx: ["clsx"],
  "lucide-react": ["lucide-react"],
  "framer-motion": ["framer-motion"],
  recharts: ["recharts"],
};
const GROUP_OF = new Map(Object.entries(GROUPS).flatMap(([group, specs]) => specs.map((s) => [s, group])));
const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const NODE_ENV = '"development"'; // React's development build: its warnings (keys, nesting) are feedback
const LOADERS = { tsx: "tsx", jsx: "jsx", ts: "ts", js: "js" };

function packageName(spec) {
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

/** Why an import from the component is refused, or null when it may be resolved. */
function refusal(spec) {
  const list = AVAILABLE.join(", ");
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) return `URL import '${spec}' is not available (no network); available packages: ${list}`;
  if (BUILTINS.has(spec) || BUILTINS.has(packageName(spec))) return `node builtin '${spec}' is not available in the browser; available packages: ${list}`;
  if (spec.startsWith(".") || spec.startsWith("/") || spec.includes("\\"))
    return `import '${spec}' refused: a component is one file; only packages from the runtime can be imported (${list})`;
  if (spec.split("/").some((part) => part === "." || part === ".." || part === ""))
    return `import '${spec}' refused: '.' and '..' segments are not allowed`;
  const name = packageName(spec);
  if (!AVAILABLE.includes(name)) return `package '${name}' is not available; available: ${list}`;
  return null;
}

/** Specifiers owned by a vendor group (other than `ownGroup`) resolve to the registry, not to a copy. */
function registryPlugin(ownGroup) {
  return {
    name: "roopik-registry",
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        const group = GROUP_OF.get(args.path);
        if (group !== undefined && group !== ownGroup && args.kind !== "entry-point")
          return { path: args.path, namespace: "roopik-registry" };
        return undefined;
      });
      build.onLoad({ filter: /.*/, namespace: "roopik-registry" }, (args) => ({
        contents: `var m = globalThis.__roopikModules && globalThis.__roopikModules[${JSON.stringify(args.path)}];\n` +
          `if (!m) throw new Error(${JSON.stringify(`runtime module '${args.path}' is not loaded`)});\nmodule.exports = m;\n`,
        loader: "js",
      }));
    },
  };
}

async function buildVendor() {
  const groups = {};
  await Promise.all(Object.entries(GROUPS).map(async ([group, specs]) => {
    const lines = specs.map((spec, i) => `import * as m${i} from ${JSON.stringify(spec)};`);
    lines.push("const R = globalThis.__roopikModules || (globalThis.__roopikModules = {});");
    specs.forEach((spec, i) => lines.push(`R[${JSON.stringify(spec)}] = Object.freeze({ __esModule: true, ...m${i} });`));
    const result = await esbuild.build({
      stdin: { contents: lines.join("\n"), loader: "js", resolveDir: RUNTIME_DIR, sourcefile: `vendor-${group}.js` },
      bundle: true, write: false, format: "iife", platform: "browser", minify: true, legalComments: "none",
      define: { "process.env.NODE_ENV": NODE_ENV }, plugins: [registryPlugin(group)], logLevel: "silent",
    });
    groups[group] = { js: result.outputFiles[0].text, specifiers: specs };
  }));
  return { groups };
}

// lucide-react's barrel re-exports ~1,700 icons: esbuild needs ~0.2 s to parse them all, and the page ~0.15 s to
// load its vendor script. When every import of it in the component is a plain `import { A, B as C } from
// "lucide-react"`, the component gets a barrel of just those names instead (a few ms).
let lucideIndex = null;
function lucideExports() {
  if (lucideIndex === null) {
    const dir = path.join(RUNTIME_DIR, "node_modules", "lucide-react", "dist", "esm");
    const text = readFileSync(path.join(dir, "lucide-react.mjs"), "utf8");
    lucideIndex = { dir, names: new Map() };
    for (const match of text.matchAll(/export\s*\{([^}]*)\}\s*from\s*'([^']+)'/g)) {
      for (const part of match[1].split(",")) {
        const [imported, exported] = part.trim().split(/\s+as\s+/);
        if (imported) lucideIndex.names.set(exported || imported, { imported, from: match[2] });
      }
    }
  }
  return lucideIndex;
}

/** The lucide-react names the component imports, or null when an import of it is not a plain named import. */
function lucideNamesIn(code) {
  const mentions = (code.match(/["']lucide-react["']/g) || []).length;
  if (mentions === 0) return null;
  const names = new Set();
  let plain = 0;
  for (const match of code.matchAll(/import\s*(type\s+)?\{([^}]*)\}\s*from\s*["']lucide-react["']/g)) {
    plain += 1;
    if (match[1]) continue;
    for (const part of match[2].split(",")) {
      const item = part.trim();
      if (!item || item.startsWith("type ")) continue;
      names.add(item.split(/\s+as\s+/)[0].trim());
    }
  }
  return plain === mentions ? names : null;
}

function lucideBarrel(names) {
  const { dir, names: index } = lucideExports();
  const lines = [];
  for (const name of names) {
    const entry = index.get(name);
    if (entry) lines.push(`export { ${entry.imported} as ${name} } from ${JSON.stringify(path.join(dir, entry.from))};`);
  }
  return { contents: lines.join("\n") + "\n", loader: "js", resolveDir: dir };
}

/** The generated entry: mounts the default export with React 19's createRoot under an error boundary that reports. */
const MOUNT = `
import { Component, createElement } from "react";
import { createRoot } from "react-dom/client";
import * as mod from "roopik:component";
const report = globalThis.__roopikReport || (() => {});
class RoopikErrorBoundary extends Component {
  constructor(props) { super(props); this.state = { failed: false }; }
  static getDerivedStateFromError() { return { failed: true }; }
  render() { return this.state.failed ? null : this.props.children; }
}
const Root = mod.default;
const container = document.getElementById("root");
if (typeof Root !== "function" && !(Root && typeof Root === "object" && Root.$$typeof)) {
  const names = Object.keys(mod).filter((k) => k !== "default");
  report("render", { message: "the module has no default export to mount (a React component is expected: export default function Name() {...})" +
    (names.length ? "; its exports: " + names.join(", ") : ""), stack: "" });
} else {
  const root = createRoot(container, {
    onCaughtError(error, info) { report("render", { message: String(error && error.message || error), stack: String(error && error.stack || ""), componentStack: info && info.componentStack || "" }); },
    onUncaughtError(error, info) { report("render", { message: String(error && error.message || error), stack: String(error && error.stack || ""), componentStack: info && info.componentStack || "" }); },
  });
  root.render(createElement(RoopikErrorBoundary, null, createElement(Root)));
}
`;

function message(m, component) {
  const loc = m.location;
  let file = loc ? loc.file.replace(/^roopik-component:/, "") : null;
  if (file && file.startsWith(RUNTIME_DIR + "/")) file = path.relative(RUNTIME_DIR, file);
  let column = null;
  if (loc) column = Buffer.from(loc.lineText, "utf8").subarray(0, loc.column).toString("utf8").length + 1;
  return { file, line: loc ? loc.line : null, column, text: m.text, line_text: loc ? loc.lineText : null,
           in_component: Boolean(loc && file === component) };
}

async function buildComponent({ code, language, filename }) {
  const loader = LOADERS[language];
  if (!loader) throw new Error(`unknown language ${language}`);
  const used = new Set();
  const lucideNames = lucideNamesIn(code);
  const plugin = {
    name: "roopik-component",
    setup(build) {
      build.onResolve({ filter: /^roopik:component$/ }, () => ({ path: filename, namespace: "roopik-component" }));
      build.onLoad({ filter: /.*/, namespace: "roopik-component" }, () => ({ contents: code, loader, resolveDir: RUNTIME_DIR }));
      build.onLoad({ filter: /.*/, namespace: "roopik-lucide" }, () => lucideBarrel(lucideNames));
      build.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === "entry-point") return undefined;
        if (args.namespace === "roopik-component") {
          const why = refusal(args.path);
          if (why) return { errors: [{ text: why }] };
        }
        if (args.path === "lucide-react" && lucideNames !== null && args.namespace === "roopik-component")
          return { path: "lucide-react", namespace: "roopik-lucide" };
        const group = GROUP_OF.get(args.path);
        if (group !== undefined) {
          used.add(group);
          return { path: args.path, namespace: "roopik-registry" };
        }
        return undefined; // a subpath of an available package, or a dependency inside node_modules
      });
    },
  };
  const started = performance.now();
  let result;
  try {
    result = await esbuild.build({
      stdin: { contents: MOUNT, loader: "js", resolveDir: RUNTIME_DIR, sourcefile: "roopik-mount.js" },
      bundle: true, write: false, format: "iife", platform: "browser", jsx: "automatic", jsxDev: false,
      sourcemap: "external", sourcesContent: false, outfile: "/component.js", target: "chrome120",
      define: { "process.env.NODE_ENV": NODE_ENV }, logLevel: "silent",
      plugins: [plugin, registryPlugin(null)],
    });
  } catch (error) {
    if (!error.errors) throw error;
    return { ok: false, errors: error.errors.map((m) => message(m, filename)), warnings: (error.warnings || []).map((m) => message(m, filename)),
             esbuild_ms: performance.now() - started };
  }
  const esbuildMs = performance.now() - started;
  const js = result.outputFiles.find((f) => f.path.endsWith(".js")).text;
  const map = result.outputFiles.find((f) => f.path.endsWith(".map")).text;
  const twStarted = performance.now();
  const css = await tailwindCss(code, loader);
  return { ok: true, js, map, css, groups: ["react", ...[...used].filter((g) => g !== "react").sort()],
           errors: [], warnings: result.warnings.map((m) => message(m, filename)),
           esbuild_ms: esbuildMs, tailwind_ms: performance.now() - twStarted };
}

/** Tailwind v4 CSS for the class candidates in `content` (a fresh compiler each time: output depends on this code only). */
async function tailwindCss(content, extension) {
  const compiler = await compileTailwind('@import "tailwindcss";', { base: RUNTIME_DIR, onDependency() {} });
  const candidates = new Scanner({ sources: [] }).scanFiles([{ content, extension }]);
  return compiler.build(candidates);
}

async function handle(request) {
  switch (request.op) {
    case "hello": return { versions: { esbuild: esbuild.version, node: process.versions.node,
                                       tailwindcss: require("tailwindcss/package.json").version }, available: AVAILABLE };
    case "vendor": return await buildVendor();
    case "build": return await buildComponent(request);
    case "tailwind": return { css: await tailwindCss(request.content, request.extension || "html") };
    default: throw new Error(`unknown op ${request.op}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let request;
  try { request = JSON.parse(line); } catch (error) { process.stdout.write(JSON.stringify({ id: null, fatal: String(error) }) + "\n"); return; }
  handle(request).then(
    (answer) => process.stdout.write(JSON.stringify({ id: request.id, ...answer }) + "\n"),
    (error) => process.stdout.write(JSON.stringify({ id: request.id, fatal: String(error && error.stack || error) }) + "\n"),
  );
});
lines.on("close", () => { esbuild.stop(); process.exit(0); });
