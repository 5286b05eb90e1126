"""The walkthrough in notes/ checked against the script it explains.

Code in a ```python block of notes/ is either an exact excerpt of
mnist_large_cnn.py or, when the line just before the fence is ``*2017:*``,
a quote of the 2017 original. Lines are compared without their leading
and trailing spaces; blank lines and ``...`` (an elision) are ignored.
"""

import ast
import re
import subprocess
import sys

import pytest

import mnist_large_cnn as cnn
from conftest import ROOT, SCRIPT

NOTES = ROOT / "notes"
IMAGES = ROOT / "img"
MARK_2017 = "*2017:*"
CHAPTERS = sorted(NOTES.glob("[0-9][0-9]-*.md"))
FIGURES = [
    "sample-digits.png",
    "neuron.png",
    "architecture.png",
    "max-pooling.png",
    "filters.png",
    "feature-maps.png",
    "learning-curves.png",
    "confusion-matrix.png",
    "misclassified.png",
    "prepared-input.png",
]


# Reading the notes and the script


def python_blocks():
    """Yield (file name, line of the fence, is 2017, lines) per python block."""
    for path in sorted(NOTES.glob("*.md")):
        fence, block, start, is_2017, previous = None, [], 0, False, ""
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if fence is None:
                if stripped.startswith("```"):
                    fence = stripped[3:].strip() or "plain"
                    block, start = [], number
                    is_2017 = previous == MARK_2017
                elif stripped:
                    previous = stripped
            elif stripped == "```":
                if fence == "python":
                    yield path.name, start, is_2017, block
                fence, previous = None, "```"
            else:
                block.append(line)
        assert fence is None, f"{path.name}: code block at line {start} is not closed"


def meaningful(lines):
    return [s for s in (line.strip() for line in lines) if s and s != "..."]


def script_code_lines():
    """(line number, stripped text) of every line that is code, not prose.

    Blank lines, comment lines and docstrings are left out.
    """
    source = SCRIPT.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    return [
        (number, line.strip())
        for number, line in enumerate(source.splitlines(), 1)
        if line.strip()
        and not line.strip().startswith("#")
        and number not in docstrings
    ]


def without_code_blocks(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def code_outside_fences(text):
    """The text without code blocks and inline code, where links are not links."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(text))


# (a) and (b): the notes quote the whole script, and only the script


def test_every_code_line_of_the_script_is_quoted_in_the_notes():
    quoted = set()
    for _, _, is_2017, lines in python_blocks():
        if not is_2017:
            quoted.update(meaningful(lines))
    missing = [f"{n}: {line}" for n, line in script_code_lines() if line not in quoted]
    assert not missing, "script lines not quoted in notes/:\n" + "\n".join(missing)


def test_every_python_block_is_an_exact_excerpt_of_the_script():
    script = {line.strip() for line in SCRIPT.read_text().splitlines()}
    wrong = [
        f"{name}, block at line {start}: {line}"
        for name, start, is_2017, lines in python_blocks()
        if not is_2017
        for line in meaningful(lines)
        if line not in script
    ]
    assert not wrong, "lines not in mnist_large_cnn.py:\n" + "\n".join(wrong)


def test_2017_blocks_quote_the_full_2017_listing():
    old = [lines for _, _, is_2017, lines in python_blocks() if is_2017]
    assert old, "no 2017 block found"
    # The longest 2017 block is the complete original script.
    listing = set(meaningful(max(old, key=len)))
    assert 'print("Large CNN Error: %.2f%%" % (100-scores[1]*100))' in listing
    stray = [line for lines in old for line in meaningful(lines) if line not in listing]
    assert not stray, "2017 lines not in the 2017 listing:\n" + "\n".join(stray)


# (c): links and images


def github_anchors(path):
    """The anchors GitHub makes for the headings of a Markdown file."""
    anchors, seen = set(), {}
    for line in without_code_blocks(path.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize(
    "page",
    [*sorted(NOTES.glob("*.md")), ROOT / "README.md"],
    ids=lambda path: path.relative_to(ROOT).as_posix(),
)
def test_relative_links_and_images_resolve(page):
    broken = []
    for target in LINK.findall(code_outside_fences(page.read_text())):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in github_anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}:\n" + "\n".join(broken)


def test_every_figure_is_shown_in_the_notes():
    shown = set()
    for page in NOTES.glob("*.md"):
        shown.update(re.findall(r"!\[[^\]]*\]\(\.\./img/([^)]+)\)", page.read_text()))
    assert set(FIGURES) <= shown
    assert {path.name for path in IMAGES.glob("*.png")} <= shown


def test_each_chapter_ends_with_a_link_to_the_next():
    names = [path.name for path in CHAPTERS]
    assert names[0] == "01-imports.md" and len(names) == 11
    for page, following in zip(CHAPTERS, names[1:], strict=False):
        links = LINK.findall(code_outside_fences(page.read_text()))
        assert links and links[-1] == following, page.name


# (d): the model table of chapter 4


def model_table():
    """(first cell, shape, parameters) per row of the layer table of 04-model.md."""
    rows, inside = [], False
    for line in (NOTES / "04-model.md").read_text().splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "output shape" in line:
            inside = True
            continue
        if not inside or set(cells[0]) <= set("-: "):
            continue
        shape = re.fullmatch(r"\(([\d, ]+)\)", cells[2])
        count = int(cells[3].strip("*").replace(",", ""))
        numbers = shape and tuple(int(n) for n in shape[1].split(",") if n.strip())
        rows.append((cells[0], numbers, count))
    return rows


def test_the_model_table_matches_the_built_model():
    cnn.setup(cnn.SEED)
    model = cnn.larger_model(10)
    rows = model_table()
    first, *layers, total = rows
    # The input row, one row per layer in order, and the total.
    assert "Input" in first[0]
    assert first[1] == tuple(model.input_shape[1:]) and first[2] == 0
    assert len(layers) == len(model.layers)
    for (cell, shape, params), layer in zip(layers, model.layers, strict=True):
        kind = re.match(r"`?(\w+)", cell).group(1)
        assert kind == type(layer).__name__, cell
        assert shape == tuple(layer.output.shape[1:]), cell
        assert params == layer.count_params(), cell
    assert "total" in total[0].lower()
    assert total[2] == model.count_params() == 59933


# (e): the figures


def test_the_figure_command_draws_every_figure(
    trained_model, mnist_npz, cases, tmp_path
):
    result = subprocess.run(
        [
            sys.executable,
            str(IMAGES / "make_figures.py"),
            "--run",
            str(trained_model.parent),
            "--data",
            str(mnist_npz),
            "--picture",
            str(cases / "digit-photo-like-rgb.png"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for name in FIGURES:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, name
