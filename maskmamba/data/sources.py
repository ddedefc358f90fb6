"""Art sources: which package provides each style, finding or installing it, and rendering one emoji."""
from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageFont

from maskmamba.data.catalog import EmojiRecord
from maskmamba.data.imaging import has_ink, to_square_rgb

NOTO_SIZE = 109  # the one size of the font's 136x128 colour bitmap strike
SVG_RENDER_SIZE = 256  # rasterise SVGs at twice the output size, then LANCZOS down
MAX_GLYPH_ASPECT = 1.25  # one Noto glyph is 136x128; two or more side by side are far wider

Renderer = Callable[[EmojiRecord], "Image.Image | None"]


class SourceMissing(RuntimeError):
    """A source package is absent (or at the wrong version); the message names the install command."""


@dataclass(frozen=True)
class Source:
    """One art style and the package that provides it."""

    style: str
    manager: str  # "apt" or "npm"
    package: str
    version: str | None  # the pinned version; None takes what the distribution ships
    licence: str
    credit: str

    def spec(self) -> str:
        """Package name with its pin, as the package manager takes it."""
        return f"{self.package}@{self.version}" if self.version else self.package

    def install_commands(self, npm_prefix: Path) -> list[list[str]]:
        """The commands that install this source."""
        if self.manager == "apt":
            return [["apt-get", "update"], ["apt-get", "install", "-y", self.package]]
        return [["npm", "install", "--prefix", str(npm_prefix), self.spec()]]


NOTO = Source(
    style="noto",
    manager="apt",
    package="fonts-noto-color-emoji",
    version=None,
    licence="OFL-1.1",
    credit="Noto Color Emoji, Copyright 2013-2017 Google Inc., SIL Open Font License 1.1",
)
OPENMOJI = Source(
    style="openmoji",
    manager="npm",
    package="openmoji",
    version="17.0.0",
    licence="CC-BY-SA-4.0",
    credit="All emojis designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0",
)
SOURCES = {source.style: source for source in (NOTO, OPENMOJI)}


def default_npm_prefix() -> Path:
    """The npm --prefix for the sources: $MASKMAMBA_NPM_PREFIX, else ~/.cache/maskmamba/npm."""
    return Path(os.environ.get("MASKMAMBA_NPM_PREFIX", Path.home() / ".cache" / "maskmamba" / "npm"))


def npm_package_dir(source: Source, npm_prefix: Path) -> Path:
    """Where `npm install --prefix npm_prefix` puts the package."""
    return Path(npm_prefix) / "node_modules" / source.package


def _dpkg_query(*args: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    result = subprocess.run(["dpkg-query", *args], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def installed_version(source: Source, npm_prefix: Path) -> str | None:
    """The installed version of the source's package, or None when it is absent."""
    if source.manager == "apt":
        status = _dpkg_query("-W", "-f=${Status}\t${Version}", source.package)
        if not status or not status.startswith("install ok installed"):
            return None
        return status.split("\t")[1]
    package_json = npm_package_dir(source, npm_prefix) / "package.json"
    if not package_json.is_file():
        return None
    return json.loads(package_json.read_text(encoding="utf-8"))["version"]


def require(source: Source, npm_prefix: Path, install: bool = False) -> str:
    """Return the installed version; install first when allowed, else raise SourceMissing naming the command."""
    version = installed_version(source, npm_prefix)
    if version is not None and source.version in (None, version):
        return version
    if not install:
        found = f"found {version}, need {source.version}" if version else "not installed"
        command = shlex.join(source.install_commands(npm_prefix)[-1])
        raise SourceMissing(f"{source.spec()} is {found}; install it with: {command} (or pass --install)")
    for command in source.install_commands(npm_prefix):
        subprocess.run(command, check=True)
    return require(source, npm_prefix, install=False)


def noto_font_path() -> Path:
    """The NotoColorEmoji.ttf file of the installed Debian package."""
    listing = _dpkg_query("-L", NOTO.package) or ""
    fonts = [line for line in listing.splitlines() if line.endswith("NotoColorEmoji.ttf")]
    if not fonts:
        raise SourceMissing(f"{NOTO.package} lists no NotoColorEmoji.ttf; reinstall it")
    return Path(fonts[0])


def openmoji_json(npm_prefix: Path) -> Path:
    """OpenMoji's catalogue: annotation, CLDR tags, group and subgroup per hexcode."""
    return npm_package_dir(OPENMOJI, npm_prefix) / "data" / "openmoji.json"


class NotoRenderer:
    """Renders an emoji's code points with Noto Color Emoji; None unless they make exactly one glyph."""

    def __init__(self, font_path: Path):
        self.font = ImageFont.truetype(str(font_path), NOTO_SIZE, layout_engine=ImageFont.Layout.RAQM)

    def __call__(self, record: EmojiRecord) -> Image.Image | None:
        left, top, right, bottom = self.font.getbbox(record.text)
        width, height = right - left, bottom - top
        if height <= 0 or width > MAX_GLYPH_ASPECT * height:
            return None
        canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((-left, -top), record.text, font=self.font, embedded_color=True)
        return to_square_rgb(canvas) if has_ink(canvas) else None


class OpenMojiRenderer:
    """Rasterises OpenMoji's colour SVG (72x72 view box) for an emoji; None when it has none."""

    def __init__(self, svg_dir: Path):
        self.svg_dir = Path(svg_dir)

    def __call__(self, record: EmojiRecord) -> Image.Image | None:
        import cairosvg  # imported here so that the rest of the package works without it

        path = self.svg_dir / f"{record.hexcode}.svg"
        if not path.is_file():
            return None
        png = cairosvg.svg2png(url=str(path), output_width=SVG_RENDER_SIZE, output_height=SVG_RENDER_SIZE)
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            return to_square_rgb(image) if has_ink(image) else None


def renderer(source: Source, npm_prefix: Path) -> Renderer:
    """The renderer of an installed source."""
    if source is NOTO:
        return NotoRenderer(noto_font_path())
    return OpenMojiRenderer(npm_package_dir(source, npm_prefix) / "color" / "svg")
