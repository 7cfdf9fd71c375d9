#!/usr/bin/env python3
"""Lists glueberry's public API, one item per line, from rustdoc's JSON output.

    .ci/public-api.py target/doc/glueberry.json > glueberry/public-api.txt

Every public path (re-exports followed) with its kind and signature: functions and methods
with their parameters, struct fields, enum variants, constants, and the traits each type
implements (auto and blanket impls left out). `glueberry::unstable` is left out: it promises
nothing (its doc says so). `.ci/run` compares the listing with the committed one, so that a
change of the public API shows in review.
"""

import json
import sys

SKIP = {"glueberry::unstable"}

d = json.load(open(sys.argv[1]))
index = d["index"]
paths = d["paths"]
out = set()


def item(i):
    return index.get(str(i))


def gen_args(a):
    if not a:
        return ""
    if "angle_bracketed" in a:
        ab = a["angle_bracketed"]
        parts = []
        for x in ab["args"]:
            if "type" in x:
                parts.append(ty(x["type"]))
            elif "lifetime" in x:
                parts.append(x["lifetime"])
            elif "const" in x:
                parts.append(x["const"].get("expr", "_"))
            else:
                parts.append("_")
        for c in ab.get("constraints", []):
            b = c.get("binding", {})
            if "equality" in b:
                parts.append(f'{c["name"]} = {ty(b["equality"].get("type", {}))}')
            else:
                parts.append(f'{c["name"]}: {bounds(b.get("constraint", []))}')
        return "<" + ", ".join(parts) + ">" if parts else ""
    if "parenthesized" in a:
        p = a["parenthesized"]
        o = p.get("output")
        return "(" + ", ".join(ty(t) for t in p["inputs"]) + ")" + (f" -> {ty(o)}" if o else "")
    return ""


def path_name(p):
    return p["path"] + gen_args(p.get("args"))


def bounds(bs):
    parts = []
    for b in bs:
        if "trait_bound" in b:
            tb = b["trait_bound"]
            mod = "?" if tb.get("modifier") == "maybe" else ""
            parts.append(mod + path_name(tb["trait"]))
        elif "outlives" in b:
            parts.append(b["outlives"])
        else:
            parts.append("_")
    return " + ".join(parts)


def ty(t):
    if t is None:
        return "()"
    k, v = next(iter(t.items()))
    if k == "resolved_path":
        return path_name(v)
    if k == "primitive":
        return v
    if k == "generic":
        return v
    if k == "borrowed_ref":
        lt = (v["lifetime"] + " ") if v.get("lifetime") else ""
        return "&" + lt + ("mut " if v["is_mutable"] else "") + ty(v["type"])
    if k == "tuple":
        return "(" + ", ".join(ty(x) for x in v) + ")"
    if k == "slice":
        return "[" + ty(v) + "]"
    if k == "array":
        return "[" + ty(v["type"]) + "; " + v["len"] + "]"
    if k == "impl_trait":
        return "impl " + bounds(v)
    if k == "dyn_trait":
        return "dyn " + " + ".join(path_name(p["trait"]) for p in v["traits"])
    if k == "raw_pointer":
        return "*" + ("mut " if v["is_mutable"] else "const ") + ty(v["type"])
    if k == "qualified_path":
        tr = path_name(v["trait"]) if v.get("trait") else ""
        return f'<{ty(v["self_type"])} as {tr}>::{v["name"]}'
    if k == "function_pointer":
        return "fn(" + ", ".join(ty(x[1]) for x in v["sig"]["inputs"]) + ")"
    if k == "infer":
        return "_"
    return k


def generics(g, skip_synthetic=True):
    params = []
    for p in g["params"]:
        k, v = next(iter(p["kind"].items()))
        if k == "type":
            if v.get("is_synthetic") and skip_synthetic:
                continue
            b = bounds(v["bounds"])
            params.append(p["name"] + (": " + b if b else ""))
        elif k == "lifetime":
            params.append(p["name"])
        elif k == "const":
            params.append(f'const {p["name"]}: {ty(v["type"])}')
    s = "<" + ", ".join(params) + ">" if params else ""
    wh = []
    for w in g.get("where_predicates", []):
        if "bound_predicate" in w:
            bp = w["bound_predicate"]
            wh.append(ty(bp["type"]) + ": " + bounds(bp["bounds"]))
    if wh:
        s += " where " + ", ".join(wh)
    return s


def fn_sig(name, f):
    h = f["header"]
    pre = ("const " if h["is_const"] else "") + ("async " if h["is_async"] else "") + ("unsafe " if h["is_unsafe"] else "")
    args = []
    for n, t in f["sig"]["inputs"]:
        if n == "self":
            args.append(ty(t).replace("Self", "self") if t != {"generic": "Self"} else "self")
        else:
            args.append(f"{n}: {ty(t)}")
    o = f["sig"]["output"]
    ret = f" -> {ty(o)}" if o else ""
    return f"{pre}fn {name}{generics(f['generics'])}({', '.join(args)}){ret}"


def impls(path, ids):
    for i in ids:
        im = item(i)
        if not im:
            continue
        v = im["inner"]["impl"]
        if v["is_synthetic"] or v["blanket_impl"]:
            continue
        if v["trait"]:
            out.add(f"impl {path_name(v['trait'])} for {path}")
            continue
        for m in v["items"]:
            mi = item(m)
            if not mi or mi["visibility"] != "public":
                continue
            k, mv = next(iter(mi["inner"].items()))
            if k == "function":
                out.add(fn_sig(f"{path}::{mi['name']}", mv))
            elif k == "assoc_const":
                out.add(f"{path}::const {mi['name']}: {ty(mv['type'])}")


def walk(i, path):
    it = item(i)
    if it is None:
        return
    k, v = next(iter(it["inner"].items()))
    if path in SKIP:
        out.add(f"mod {path}  (unstable: not listed)")
        return
    if k == "module":
        out.add(f"mod {path}")
        for c in v["items"]:
            ci = item(c)
            if ci is None:
                continue
            ck, cv = next(iter(ci["inner"].items()))
            if ck == "use":
                if cv["is_glob"]:
                    t = item(cv["id"]) if cv["id"] is not None else None
                    if t and "module" in t["inner"]:
                        for g in t["inner"]["module"]["items"]:
                            gi = item(g)
                            if gi and gi["visibility"] == "public" and gi["name"]:
                                walk(g, f"{path}::{gi['name']}")
                    continue
                target = item(cv["id"]) if cv["id"] is not None else None
                name = cv["name"]
                if target is None:
                    out.add(f"pub use {path}::{name} = {cv['source']}")
                else:
                    walk(cv["id"], f"{path}::{name}")
            elif ci["visibility"] == "public" and ci["name"]:
                walk(c, f"{path}::{ci['name']}")
        return
    if k == "struct":
        kind = v["kind"]
        out.add(f"struct {path}{generics(v['generics'])}")
        fields = kind.get("plain", {}).get("fields", []) if isinstance(kind, dict) else []
        if isinstance(kind, dict) and "tuple" in kind:
            fields = [f for f in kind["tuple"] if f is not None]
        for f in fields:
            fi = item(f)
            if fi and fi["visibility"] == "public":
                out.add(f"{path}::{fi['name']}: {ty(fi['inner']['struct_field'])}")
        if isinstance(kind, dict) and kind.get("plain", {}).get("has_stripped_fields"):
            out.add(f"{path}: has private fields")
        impls(path, v["impls"])
    elif k == "enum":
        out.add(f"enum {path}{generics(v['generics'])}")
        for var in v["variants"]:
            vi = item(var)
            vk = vi["inner"]["variant"]["kind"]
            if vk == "plain":
                out.add(f"{path}::{vi['name']}")
            elif "tuple" in vk:
                ts = [ty(item(f)["inner"]["struct_field"]) for f in vk["tuple"] if f is not None]
                out.add(f"{path}::{vi['name']}({', '.join(ts)})")
            else:
                fs = [f"{item(f)['name']}: {ty(item(f)['inner']['struct_field'])}" for f in vk["struct"]["fields"]]
                out.add(f"{path}::{vi['name']} {{ {', '.join(fs)} }}")
        impls(path, v["impls"])
    elif k == "function":
        out.add(fn_sig(path, v))
    elif k == "constant":
        out.add(f"const {path}: {ty(v['type'])}")
    elif k == "static":
        out.add(f"static {path}: {ty(v['type'])}")
    elif k == "type_alias":
        out.add(f"type {path}{generics(v['generics'])} = {ty(v['type'])}")
    elif k == "trait":
        out.add(f"trait {path}{generics(v['generics'])}")
        for m in v["items"]:
            mi = item(m)
            mk, mv = next(iter(mi["inner"].items()))
            if mk == "function":
                out.add(fn_sig(f"{path}::{mi['name']}", mv))
    elif k == "macro":
        out.add(f"macro {path}")
    else:
        out.add(f"{k} {path}")


walk(d["root"], "glueberry")
for line in sorted(out):
    print(line)
