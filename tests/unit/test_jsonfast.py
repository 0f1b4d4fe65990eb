"""stacklab.jsonfast must read and write exactly what the json package does."""

import json
import subprocess
import sys

import pytest

from stacklab import jsonfast

SAMPLES = [
    {"ociVersion": "1.0.2", "process": {"args": ["sh", "-c", 'echo "hi" ü €'], "uid": 0}},
    [1, -2, 3.5, 1e100, True, False, None, "", [], {}],
    {"nested": {"deep": [{"x": [None]}]}, "unicode": "\u2603\n\t\\"},
    "just a string",
    12345678901234567890,
]


@pytest.mark.parametrize("obj", SAMPLES)
def test_same_as_json(obj: object) -> None:
    assert jsonfast.dumps(obj) == json.dumps(obj)
    assert jsonfast.dumps(obj, (",", ":")) == json.dumps(obj, separators=(",", ":"))
    text = json.dumps(obj, indent=2)
    assert jsonfast.loads(text) == json.loads(text)
    assert jsonfast.loads(text.encode()) == obj


@pytest.mark.parametrize(
    "bad", ["", "   ", "{", '{"a": }', "[1, 2", '{"a": 1} x', "nul", '"\x01"', "{'a': 1}"]
)
def test_bad_json_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        jsonfast.loads(bad)


def test_bad_json_without_the_json_package_loaded() -> None:
    """As in runc-py, where nothing has imported json: still a ValueError, not a SystemError."""
    code = (
        "import sys\nfrom stacklab import jsonfast\nassert 'json' not in sys.modules\n"
        "try:\n    jsonfast.loads('{\"a\": 1')\nexcept ValueError as e:\n    print(type(e).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "JSONDecodeError"


def test_unserializable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonfast.dumps({"x": object()})


def test_a_failed_dumps_leaves_nothing_behind() -> None:
    obj = {"x": 1}
    with pytest.raises(TypeError):
        jsonfast.dumps({"a": obj, "b": object()})
    assert jsonfast.dumps({"a": obj}) == '{"a": {"x": 1}}'
