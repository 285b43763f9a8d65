"""``OUT/README.md`` and the example code beside it: Kotlin (Android, onnxruntime-android),
Swift (iOS, onnxruntime-objc) and JavaScript (onnxruntime-web) that load ``model.ort`` (and
``model_e2e.ort`` with the onnxruntime-extensions library, where it exists) and call it.

The versions are those of the ONNX Runtime that converted the models: an ORT-format file loads
in that release and later ones, not necessarily in earlier ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.bundle import Bundle

# The app-side packages, pinned to the releases that match the Python ones used here
# (onnxruntime 1.31.1, onnxruntime-extensions 0.15.x). onnxruntime-web and onnxruntime-node
# 1.31.1 are on npm; the Maven and CocoaPods packages are published with each ONNX Runtime
# release under the same number. onnxruntime-react-native's newest npm release is 1.24.3.
PACKAGES = {
    "android": ("com.microsoft.onnxruntime:onnxruntime-android:1.31.1",
                "com.microsoft.onnxruntime:onnxruntime-extensions-android:0.15.0"),
    "ios": ("pod 'onnxruntime-objc', '~> 1.31.1'", "pod 'onnxruntime-extensions-c', '~> 0.15.0'"),
    "web": ("onnxruntime-web@1.31.1", None),
    "node": ("onnxruntime-node@1.31.1", None),
}

_KOTLIN_TYPES = {"int64": ("LongBuffer", "LongArray", "0L", "1L"),
                 "int32": ("IntBuffer", "IntArray", "0", "1"),
                 "float32": ("FloatBuffer", "FloatArray", "0f", "1f")}
_JS_TYPES = {"int64": ("BigInt64Array", "0n", "1n"), "int32": ("Int32Array", "0", "1"),
             "float32": ("Float32Array", "0", "1")}
_SWIFT_TYPES = {"int64": ("Int64", ".int64"), "int32": ("Int32", ".int32"),
                "float32": ("Float", ".float")}


def _shape(spec: dict, sizes: dict) -> list[int]:
    return [sizes.get(d, 1) if isinstance(d, str) else d for d in spec["dims"]]


def _fill(name: str) -> bool:
    """Whether the example fills an input with ones (masks) rather than zeros."""
    return "mask" in name


def kotlin_example(bundle: Bundle, report: dict) -> str:
    sizes = {**report["sample_sizes"], **((report.get("fixed_shapes") or {}).get("fixed", {}))}
    lines = []
    for spec in report["inputs"]:
        buffer, array, zero, one = _KOTLIN_TYPES.get(spec["dtype"], _KOTLIN_TYPES["float32"])
        shape = _shape(spec, sizes)
        count = 1
        for d in shape:
            count *= d
        lines.append(
            f'            inputs["{spec["name"]}"] = OnnxTensor.createTensor(env, {buffer}.wrap('
            f'{array}({count}) {{ {one if _fill(spec["name"]) else zero} }}), '
            f'longArrayOf({", ".join(f"{d}L" for d in shape)}))')
    feeds = "\n".join(lines)
    e2e = report["e2e"].get("built")
    e2e_code = ""
    if e2e:
        e2e_input = next(iter(report["e2e"].get("inputs", {"text": ""})))
        make = ('OnnxTensor.createTensor(env, arrayOf("I love this phone."), longArrayOf(1))'
                if e2e_input == "text" else
                "OnnxTensor.createTensor(env, ByteBuffer.wrap(jpegBytes), "
                "longArrayOf(jpegBytes.size.toLong()), OnnxJavaType.UINT8)")
        e2e_code = f"""
    /** The end-to-end model: raw input in, results out (needs onnxruntime-extensions). */
    fun runEndToEnd(context: Context, jpegBytes: ByteArray = ByteArray(0)): Map<String, Any?> {{
        val options = OrtSession.SessionOptions()
        options.registerCustomOpLibrary(OrtxPackage.getLibraryPath())
        val bytes = context.assets.open("model_e2e.ort").readBytes()
        env.createSession(bytes, options).use {{ session ->
            val input = {make}
            session.run(mapOf("{e2e_input}" to input)).use {{ result ->
                return result.associate {{ it.key to it.value.value }}
            }}
        }}
    }}
"""
    return f"""// Android (Kotlin): {report['bundle']['task']} with ONNX Runtime Mobile.
// build.gradle:
//   implementation("{PACKAGES['android'][0]}")
//   implementation("{PACKAGES['android'][1]}")  // only for model_e2e.ort
// Copy model.ort (and model_e2e.ort) into app/src/main/assets/.
package com.example.edgeport

import ai.onnxruntime.OnnxJavaType
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.extensions.OrtxPackage
import android.content.Context
import java.nio.ByteBuffer
import java.nio.FloatBuffer
import java.nio.IntBuffer
import java.nio.LongBuffer

class EdgeportModel {{
    private val env = OrtEnvironment.getEnvironment()

    /** model.ort: the graph alone; the app tokenizes / preprocesses (see README.md). */
    fun run(context: Context): Map<String, Any?> {{
        val options = OrtSession.SessionOptions()
        // options.addNnapi()  // try NNAPI with model_fixed.ort (see mobile_report.md)
        val bytes = context.assets.open("model.ort").readBytes()
        env.createSession(bytes, options).use {{ session ->
            val inputs = mutableMapOf<String, OnnxTensor>()
{feeds}
            session.run(inputs).use {{ result ->
                return result.associate {{ it.key to it.value.value }}
            }}
        }}
    }}
{e2e_code}}}
"""


def swift_example(bundle: Bundle, report: dict) -> str:
    sizes = {**report["sample_sizes"], **((report.get("fixed_shapes") or {}).get("fixed", {}))}
    lines = []
    for spec in report["inputs"]:
        swift, element = _SWIFT_TYPES.get(spec["dtype"], _SWIFT_TYPES["float32"])
        shape = _shape(spec, sizes)
        count = 1
        for d in shape:
            count *= d
        value = 1 if _fill(spec["name"]) else 0
        var = spec["name"].replace(".", "_")
        lines.append(
            f"        var {var} = [{swift}](repeating: {value}, count: {count})\n"
            f'        inputs["{spec["name"]}"] = try ORTValue(tensorData: NSMutableData(bytes: '
            f"&{var}, length: {count} * MemoryLayout<{swift}>.size), elementType: {element}, "
            f"shape: [{', '.join(str(d) for d in shape)}])")
    feeds = "\n".join(lines)
    outputs = ", ".join(f'"{o["name"]}"' for o in report["outputs"])
    e2e_code = ""
    if report["e2e"].get("built"):
        e2e_input = next(iter(report["e2e"].get("inputs", {"text": ""})))
        e2e_outputs = ", ".join(f'"{name}"' for name in report["e2e"].get("outputs", {}))
        make = ('try ORTValue(tensorStringData: ["I love this phone."], shape: [1])'
                if e2e_input == "text" else
                "try ORTValue(tensorData: NSMutableData(data: jpeg), elementType: .uInt8, "
                "shape: [NSNumber(value: jpeg.count)])")
        e2e_code = f"""
    /// The end-to-end model: raw input in, results out (needs onnxruntime-extensions-c).
    func runEndToEnd(jpeg: Data = Data()) throws -> [String: ORTValue] {{
        let options = try ORTSessionOptions()
        try options.registerCustomOps(functionPointer: RegisterCustomOps)
        let path = Bundle.main.path(forResource: "model_e2e", ofType: "ort")!
        let session = try ORTSession(env: env, modelPath: path, sessionOptions: options)
        let input = {make}
        return try session.run(withInputs: ["{e2e_input}": input],
                               outputNames: [{e2e_outputs}], runOptions: nil)
    }}
"""
    return f"""// iOS (Swift): {report['bundle']['task']} with ONNX Runtime Mobile.
// Podfile:
//   {PACKAGES['ios'][0]}
//   {PACKAGES['ios'][1]}   # only for model_e2e.ort
// Add model.ort (and model_e2e.ort) to the app target's resources. The extensions' C
// header (onnxruntime_extensions.h) goes in the bridging header for RegisterCustomOps.
import Foundation
import onnxruntime_objc

final class EdgeportModel {{
    private let env = try! ORTEnv(loggingLevel: .warning)

    /// model.ort: the graph alone; the app tokenizes / preprocesses (see README.md).
    func run() throws -> [String: ORTValue] {{
        let options = try ORTSessionOptions()
        // try options.appendCoreMLExecutionProvider(with: ORTCoreMLExecutionProviderOptions())
        let path = Bundle.main.path(forResource: "model", ofType: "ort")!
        let session = try ORTSession(env: env, modelPath: path, sessionOptions: options)
        var inputs: [String: ORTValue] = [:]
{feeds}
        return try session.run(withInputs: inputs, outputNames: [{outputs}], runOptions: nil)
    }}
{e2e_code}}}
"""


def javascript_example(bundle: Bundle, report: dict) -> str:
    sizes = {**report["sample_sizes"], **((report.get("fixed_shapes") or {}).get("fixed", {}))}
    lines = []
    for spec in report["inputs"]:
        array, zero, one = _JS_TYPES.get(spec["dtype"], _JS_TYPES["float32"])
        shape = _shape(spec, sizes)
        count = 1
        for d in shape:
            count *= d
        dtype = {"float32": "float32"}.get(spec["dtype"], spec["dtype"])
        lines.append(f'    "{spec["name"]}": new ort.Tensor("{dtype}", new {array}({count})'
                     f'.fill({one if _fill(spec["name"]) else zero}), {json.dumps(shape)}),')
    feeds = "\n".join(lines)
    return f"""// Web (JavaScript, onnxruntime-web {PACKAGES['web'][0].split('@')[1]}):
// {report['bundle']['task']} in the browser.
//   npm install {PACKAGES['web'][0]}    (Node.js: {PACKAGES['node'][0]}, same API)
// onnxruntime-web has no onnxruntime-extensions build: model_e2e.ort does not load here.
// Tokenize or preprocess in JavaScript (e.g. with transformers.js) and feed model.ort.
// The same file runs in Node.js with onnxruntime-web (its wasm backend; set
// ort.env.wasm.numThreads = 1 there) or, with the import changed, onnxruntime-node.
import * as ort from "onnxruntime-web";

/** Placeholder inputs at the sizes in README.md: replace them with the tokenizer's or the
 * preprocessor's output. */
export function placeholderFeeds() {{
  return {{
{feeds}
  }};
}}

/** model: a URL in the browser, a file path in Node.js, or the model's bytes (Uint8Array). */
export async function run(model = "model.ort", feeds = placeholderFeeds()) {{
  const session = await ort.InferenceSession.create(model, {{
    executionProviders: ["wasm"],
  }});
  const results = await session.run(feeds);
  return results;  // {{ {', '.join(o['name'] for o in report['outputs'])} }}
}}
"""


def readme(bundle: Bundle, report: dict) -> str:
    e2e = report["e2e"]
    files = ["- `model.ort`: the graph in ORT format, optimized for the CPU execution provider "
             "(what onnxruntime-android/-objc on the CPU, onnxruntime-web and onnxruntime-node "
             "run).",
             "- `model.required_operators.config`: its operators, for a custom minimal build "
             "(`build.sh --minimal_build --include_ops_by_config model.required_operators."
             "config`)."]
    if report.get("fixed_shapes"):
        fixed = ", ".join(f"{k}={v}" for k, v in report["fixed_shapes"]["fixed"].items())
        files.append(f"- `model_fixed.onnx`, `model_fixed.ort`: shapes fixed at {fixed}, "
                     "EP-neutral operators (basic optimization): for NNAPI and Core ML.")
    if e2e.get("built"):
        files.append("- `model_e2e.onnx`, `model_e2e.ort`: pre- and postprocessing inside; "
                     "needs the onnxruntime-extensions custom-op library.")
    files.append("- `mobile_report.md` / `.json`: what NNAPI, Core ML and XNNPACK take, sizes, "
                 "first-inference times.")
    inputs = "\n".join(f"- `{s['name']}`: {s['dtype']} {s['dims']}" for s in report["inputs"])
    outputs = "\n".join(f"- `{s['name']}`: {s['dtype']} {s['dims']}" for s in report["outputs"])
    if e2e.get("built"):
        e2e_text = ("Inputs:\n" + "\n".join(f"- `{k}`: {v}" for k, v in e2e["inputs"].items())
                    + "\n\nOutputs:\n"
                    + "\n".join(f"- `{k}`: {v}" for k, v in e2e["outputs"].items()))
        if e2e.get("notes"):
            e2e_text += "\n\nNotes:\n" + "\n".join(f"- {n}" for n in e2e["notes"])
    else:
        e2e_text = f"No end-to-end graph for this bundle: {e2e.get('reason')}"
    android, android_x = PACKAGES["android"]
    ios, ios_x = PACKAGES["ios"]
    return f"""# {bundle.model_type} {report['bundle']['task']} for mobile apps

Made by `edgeport mobile` from the bundle's `{report['variant']}` variant with onnxruntime
{report['onnxruntime']} and onnxruntime-extensions {report['onnxruntime_extensions']}.

## Files

{chr(10).join(files)}

## model.ort

Inputs (dims by name; the app chooses their sizes unless fixed):

{inputs}

Outputs:

{outputs}

## End-to-end graph

{e2e_text}

## Packages

| Platform | Runtime | Extensions (for model_e2e.ort) |
|---|---|---|
| Android (Kotlin) | `{android}` | `{android_x}` |
| iOS (Swift) | `{ios}` | `{ios_x}` |
| Web (JavaScript) | `{PACKAGES['web'][0]}` | none: onnxruntime-web has no extensions build |
| Node.js / React Native | `{PACKAGES['node'][0]}` | none |

An ORT-format model loads in the ONNX Runtime release that wrote it ({report['onnxruntime']}) and
later ones; use these versions or newer.

## Examples

- `examples/android/EdgeportModel.kt`
- `examples/ios/EdgeportModel.swift`
- `examples/web/run.mjs`

See `mobile_report.md` for which execution provider to try.
"""


def write_examples(folder: Path, bundle: Bundle, report: dict) -> None:
    """README.md and examples/{{android,ios,web}} in ``folder``."""
    (folder / "README.md").write_text(readme(bundle, report))
    for sub, name, make in (("android", "EdgeportModel.kt", kotlin_example),
                            ("ios", "EdgeportModel.swift", swift_example),
                            ("web", "run.mjs", javascript_example)):
        (folder / "examples" / sub).mkdir(parents=True, exist_ok=True)
        (folder / "examples" / sub / name).write_text(make(bundle, report))
