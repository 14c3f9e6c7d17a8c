"""A strict validator for the Prometheus text exposition format, version 0.0.4.

validate(text) raises PromFormatError on the first violation and returns the parsed
families ({name: Family}) otherwise. Stricter than Prometheus itself where figment
promises more: every family needs # HELP and # TYPE before its first sample, and
counters end in _total (pass strict_names=False to skip that naming rule).

Checked:
  - lines end in "\\n"; no blank lines inside the exposition; no CR
  - metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*,
    no label names starting with "__", no duplicate label names in a sample
  - HELP text escapes only \\\\ and \\n; label values escape only \\\\, \\" and \\n
  - each family declared once (one HELP, one TYPE), TYPE before its samples, a
    family's samples in one contiguous group, no duplicate series
  - sample values are floats (Go ParseFloat syntax: decimal, exponent, NaN, +Inf,
    -Inf); an optional timestamp is an integer
  - counter and gauge samples carry the family name itself; counters are >= 0
    and not NaN
  - histograms: only _bucket, _sum, _count samples; every bucket has an "le"
    that is a float, buckets of a series are listed in ascending le order, their
    counts never decrease, the last one is le="+Inf" and equals _count; _sum and
    _count are present for every series with buckets (and vice versa)
  - summaries: quantile labels in [0, 1] plus _sum and _count

Run as a script, it reads the exposition on stdin and exits 1 with the message on
the first error; "--selftest" checks the validator itself on good and bad samples.
"""
import math
import re
import sys

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|Inf)|NaN")
TIMESTAMP = re.compile(r"-?[0-9]+")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class PromFormatError(ValueError):
    pass


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []  # (sample_name, labels dict, value)
        self.closed = False  # another family's sample came after ours


def parse_float(text, where):
    if not FLOAT.fullmatch(text):
        raise PromFormatError(f"{where}: {text!r} is not a float")
    if text in ("NaN",):
        return math.nan
    if text.lstrip("+-") == "Inf":
        return -math.inf if text.startswith("-") else math.inf
    return float(text)


def _unescape_help(text, where):
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "\\n":
                raise PromFormatError(f"{where}: bad escape in HELP text")
            out.append("\\" if text[i + 1] == "\\" else "\n")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_labels(line, i, where):
    """Parses {a="b",...} starting at line[i] == "{"; returns (labels, index after "}")."""
    labels = {}
    i += 1
    while True:
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(line, i)
        if not m:
            raise PromFormatError(f"{where}: bad label name at column {i + 1}")
        name = m.group(0)
        if name.startswith("__"):
            raise PromFormatError(f"{where}: label name {name!r} is reserved")
        if name in labels:
            raise PromFormatError(f"{where}: duplicate label {name!r}")
        i = m.end()
        if line[i:i + 2] != '="':
            raise PromFormatError(f"{where}: expected '=\"' after label {name!r}")
        i += 2
        value = []
        while True:
            if i >= len(line):
                raise PromFormatError(f"{where}: unterminated value of label {name!r}")
            c = line[i]
            if c == "\\":
                if i + 1 >= len(line) or line[i + 1] not in '\\"n':
                    raise PromFormatError(f"{where}: bad escape in value of label {name!r}")
                value.append({"\\": "\\", '"': '"', "n": "\n"}[line[i + 1]])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        labels[name] = "".join(value)
        if i < len(line) and line[i] == ",":
            i += 1
            if i < len(line) and line[i] == "}":  # a trailing comma is allowed by 0.0.4
                return labels, i + 1
            continue
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        raise PromFormatError(f"{where}: expected ',' or '}}' after label {name!r}")


def _family_of(sample_name, families):
    """The declared family a sample belongs to (histogram/summary suffixes)."""
    if sample_name in families:
        return families[sample_name]
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = families.get(sample_name[: -len(suffix)])
            if base is not None and base.type in ("histogram", "summary"):
                if suffix == "_bucket" and base.type == "summary":
                    return None
                return base
    return None


def _check_histogram(fam):
    series = {}
    order = []
    for sname, labels, value in fam.samples:
        suffix = sname[len(fam.name):]
        if suffix not in ("_bucket", "_sum", "_count"):
            raise PromFormatError(f"histogram {fam.name}: unexpected sample {sname}")
        key_labels = dict(labels)
        le = key_labels.pop("le", None)
        if suffix != "_bucket" and le is not None:
            raise PromFormatError(f"histogram {fam.name}: {sname} must not have an le label")
        key = tuple(sorted(key_labels.items()))
        if key not in series:
            series[key] = {"buckets": [], "sum": None, "count": None}
            order.append(key)
        s = series[key]
        if suffix == "_bucket":
            if le is None:
                raise PromFormatError(f"histogram {fam.name}: bucket without le label")
            bound = parse_float(le, f"histogram {fam.name} le")
            if math.isnan(bound):
                raise PromFormatError(f"histogram {fam.name}: le is NaN")
            if math.isnan(value) or value < 0 or value != math.floor(value):
                raise PromFormatError(f"histogram {fam.name}: bucket count {value} is not a count")
            s["buckets"].append((bound, value))
        elif suffix == "_sum":
            if s["sum"] is not None:
                raise PromFormatError(f"histogram {fam.name}: two _sum samples for {dict(key)}")
            s["sum"] = value
        else:
            if s["count"] is not None:
                raise PromFormatError(f"histogram {fam.name}: two _count samples for {dict(key)}")
            if math.isnan(value) or value < 0 or value != math.floor(value):
                raise PromFormatError(f"histogram {fam.name}: _count {value} is not a count")
            s["count"] = value
    for key in order:
        s = series[key]
        where = f"histogram {fam.name}{dict(key)}"
        if not s["buckets"]:
            raise PromFormatError(f"{where}: no buckets")
        if s["sum"] is None or s["count"] is None:
            raise PromFormatError(f"{where}: _sum and _count are required")
        bounds = [b for b, _ in s["buckets"]]
        if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
            raise PromFormatError(f"{where}: le values not strictly ascending: {bounds}")
        counts = [c for _, c in s["buckets"]]
        if any(c2 < c1 for c1, c2 in zip(counts, counts[1:])):
            raise PromFormatError(f"{where}: bucket counts decrease (not cumulative): {counts}")
        if bounds[-1] != math.inf:
            raise PromFormatError(f"{where}: last bucket must be le=\"+Inf\"")
        if counts[-1] != s["count"]:
            raise PromFormatError(f"{where}: +Inf bucket {counts[-1]} != _count {s['count']}")


def _check_summary(fam):
    seen = {}
    for sname, labels, value in fam.samples:
        suffix = sname[len(fam.name):]
        if suffix not in ("", "_sum", "_count"):
            raise PromFormatError(f"summary {fam.name}: unexpected sample {sname}")
        key_labels = dict(labels)
        q = key_labels.pop("quantile", None)
        key = tuple(sorted(key_labels.items()))
        s = seen.setdefault(key, set())
        if suffix == "":
            if q is None:
                raise PromFormatError(f"summary {fam.name}: sample without quantile")
            qv = parse_float(q, f"summary {fam.name} quantile")
            if not 0 <= qv <= 1:
                raise PromFormatError(f"summary {fam.name}: quantile {q} outside [0, 1]")
        else:
            if q is not None:
                raise PromFormatError(f"summary {fam.name}: {sname} must not have a quantile label")
            s.add(suffix)
    for key, s in seen.items():
        if s != {"_sum", "_count"}:
            raise PromFormatError(f"summary {fam.name}{dict(key)}: _sum and _count are required")


def validate(text, strict_names=True):
    if not isinstance(text, str):
        raise PromFormatError("exposition must be text")
    if text == "":
        return {}
    if not text.endswith("\n"):
        raise PromFormatError("exposition must end with a newline")
    if "\r" in text:
        raise PromFormatError("carriage return in exposition")
    families = {}
    series_seen = set()
    current = None
    lines = text[:-1].split("\n")
    for n, line in enumerate(lines, 1):
        where = f"line {n}"
        if line == "":
            raise PromFormatError(f"{where}: empty line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"):
                kw, name = parts[1], parts[2]
                if not METRIC_NAME.fullmatch(name):
                    raise PromFormatError(f"{where}: bad metric name {name!r}")
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = Family(name)
                if fam.samples:
                    raise PromFormatError(f"{where}: {kw} for {name} after its samples")
                if kw == "HELP":
                    if fam.help is not None:
                        raise PromFormatError(f"{where}: second HELP for {name}")
                    fam.help = _unescape_help(parts[3] if len(parts) > 3 else "", where)
                else:
                    if fam.type is not None:
                        raise PromFormatError(f"{where}: second TYPE for {name}")
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise PromFormatError(f"{where}: bad TYPE line")
                    fam.type = parts[3]
                    if strict_names and fam.type == "counter" and not name.endswith("_total"):
                        raise PromFormatError(f"{where}: counter {name} must end in _total")
                    if fam.type in ("histogram", "summary"):
                        for suffix in ("_bucket", "_sum", "_count"):
                            if name + suffix in families:
                                raise PromFormatError(f"{where}: {name}{suffix} clashes with family {name}")
                continue
            continue  # other comments are allowed
        m = METRIC_NAME.match(line)
        if not m:
            raise PromFormatError(f"{where}: bad metric name")
        sname = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i, where)
        if i >= len(line) or line[i] != " ":
            raise PromFormatError(f"{where}: expected one space before the value")
        rest = line[i + 1:].split(" ")
        if len(rest) not in (1, 2) or rest[0] == "":
            raise PromFormatError(f"{where}: expected 'value [timestamp]'")
        value = parse_float(rest[0], where)
        if len(rest) == 2 and not TIMESTAMP.fullmatch(rest[1]):
            raise PromFormatError(f"{where}: bad timestamp {rest[1]!r}")
        fam = _family_of(sname, families)
        if fam is None or fam.type is None:
            raise PromFormatError(f"{where}: sample {sname} before its # TYPE line")
        if strict_names and fam.help is None:
            raise PromFormatError(f"{where}: sample {sname} before its # HELP line")
        if fam.closed:
            raise PromFormatError(f"{where}: samples of {fam.name} are not one contiguous group")
        if current is not None and current is not fam:
            current.closed = True
        current = fam
        if fam.type in ("counter", "gauge", "untyped") and sname != fam.name:
            raise PromFormatError(f"{where}: sample {sname} in {fam.type} family {fam.name}")
        if fam.type == "counter" and (math.isnan(value) or value < 0):
            raise PromFormatError(f"{where}: counter {sname} has value {rest[0]}")
        key = (sname, tuple(sorted(labels.items())))
        if key in series_seen:
            raise PromFormatError(f"{where}: duplicate series {sname}{labels}")
        series_seen.add(key)
        fam.samples.append((sname, labels, value))
    for fam in families.values():
        if fam.type is None:
            raise PromFormatError(f"family {fam.name} has HELP but no TYPE")
        if fam.type == "histogram":
            _check_histogram(fam)
        elif fam.type == "summary":
            _check_summary(fam)
    return families


_GOOD = """# HELP a_total Things.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\na_total 2.5e3
# HELP h Latency.\n# TYPE h histogram\nh_bucket{le="0.1"} 1\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 3
h_sum 4.2\nh_count 3\n# HELP g A gauge.\n# TYPE g gauge\ng -1\ng{k="v"} NaN\n"""

_BAD = [
    "a_total 1\n",  # sample before TYPE
    "# HELP a_total x\n# TYPE a_total counter\na_total 1",  # no final newline
    "# HELP a_total x\n# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n",  # TYPE twice
    "# HELP a x\n# TYPE a counter\na 1\n",  # counter not ending in _total
    "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",  # negative counter
    "# HELP a_total x\n# TYPE a_total counter\na_total nan\n",  # lower-case nan
    "# HELP a_total x\n# TYPE a_total counter\na_total{x=\"a\\tb\"} 1\n",  # bad escape
    "# HELP a_total x\n# TYPE a_total counter\na_total{x=\"1\",x=\"2\"} 1\n",  # duplicate label
    "# HELP a_total x\n# TYPE a_total counter\na_total{1x=\"1\"} 1\n",  # bad label name
    "# HELP a_total x\n# TYPE a_total counter\na_total 1\na_total 2\n",  # duplicate series
    "# HELP a_total x\n# TYPE a_total counter\n# HELP g x\n# TYPE g gauge\na_total{k=\"1\"} 1\ng 1\n"
    "a_total{k=\"2\"} 1\n",  # family not contiguous
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
    "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",  # le not ascending
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",  # no _sum
    "# HELP g x\n# TYPE g gauge\ng 1 2 3\n",  # extra field
    "# HELP g x\n# TYPE g gauge\ng  1\n",  # two spaces
    "# HELP g x\n# TYPE g gauge\ng 1,5\n",  # decimal comma
    "# HELP g x\n# TYPE g gauge\n\ng 1\n",  # empty line
]


def _selftest():
    validate(_GOOD)
    for bad in _BAD:
        try:
            validate(bad)
        except PromFormatError:
            continue
        raise AssertionError(f"accepted: {bad!r}")
    print(f"promcheck: selftest ok ({len(_BAD)} bad cases refused)")


def main():
    if sys.argv[1:] == ["--selftest"]:
        _selftest()
        return 0
    text = sys.stdin.read()
    try:
        families = validate(text)
    except PromFormatError as e:
        print(f"promcheck: {e}", file=sys.stderr)
        return 1
    print(f"promcheck: ok, {len(families)} families, {sum(len(f.samples) for f in families.values())} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
