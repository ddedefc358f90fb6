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
from typing import Callable, Literal

from PIL import Image, ImageDraw, ImageFont

from maskmamba.data.catalog import EmojiRecord
from maskmamba.data.imaging import has_ink, to_square_rgb

NOTO_SIZE = 109  # the one size of the font's 136x128 colour bitmap strike
SVG_RENDER_SIZE = 256  # rasterise SVGs at twice the output size, then LANCZOS down
MAX_GLYPH_ASPECT = 1.25  # one Noto glyph is 136x128; two or more side by side are far wider
MIN_RASTER_SIZE = 128  # raster art smaller than the output size is skipped, never enlarged
VARIATION_SELECTOR_16 = 0xFE0F
RASTER_SUFFIXES = (".png", ".webp")

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
    licence: str  # the licence of the art itself (the package's code licence may differ)
    credit: str
    layout: Literal["font", "files", "iconify"]  # a colour font, one file per emoji, or an Iconify JSON set
    art: str = ""  # inside the package: the folder of files named by code point, or the Iconify icons.json
    chars: str = ""  # Iconify only: the chars.json that maps code points to icon names
    skip_subgroups: tuple[str, ...] = ()  # CLDR subgroups whose art in this package comes from another set

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
    layout="font",
)
OPENMOJI = Source(
    style="openmoji",
    manager="npm",
    package="openmoji",
    version="17.0.0",
    licence="CC-BY-SA-4.0",
    credit="All emojis designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0",
    layout="files",
    art="color/svg",
)
TWEMOJI = Source(
    style="twemoji",
    manager="npm",
    package="@twemoji/svg",
    version="15.0.0",
    licence="CC-BY-4.0",
    credit=(
        "Twemoji graphics, Copyright 2019 Twitter, Inc and other contributors (continued by jdecked/twemoji), "
        "licensed under CC-BY 4.0; SVG files from npm @twemoji/svg (package MIT, Samuel Kopp)"
    ),
    layout="files",
)
FLUENT_FLAT = Source(
    style="fluent-flat",
    manager="npm",
    package="@iconify-json/fluent-emoji-flat",
    version="1.2.6",
    licence="MIT",
    credit=(
        "Fluent Emoji (flat), Copyright (c) Microsoft Corporation, MIT License; "
        "Iconify JSON packaging from npm @iconify-json/fluent-emoji-flat (MIT)"
    ),
    layout="iconify",
    art="icons.json",
    chars="chars.json",
)
FLUENT_3D = Source(
    style="fluent-3d",
    manager="npm",
    package="@lobehub/fluent-emoji-3d",
    version="1.1.0",
    licence="MIT",
    credit=(
        "Fluent Emoji (3D), Copyright (c) Microsoft Corporation, MIT License; "
        "256x256 WebP files from npm @lobehub/fluent-emoji-3d (MIT, LobeHub)"
    ),
    layout="files",
    art="assets",
    # Microsoft's Fluent set has no country flags; this package fills them in with Noto's waving flags.
    skip_subgroups=("country-flag",),
)
SOURCES = {source.style: source for source in (NOTO, OPENMOJI, TWEMOJI, FLUENT_FLAT, FLUENT_3D)}
DEFAULT_STYLES = tuple(SOURCES)


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


def codepoint_key(name: str) -> tuple[int, ...]:
    """A code point sequence ("1F44B-1F3FB", "0023-fe0f-20e3", "23-20e3") as integers without U+FE0F.

    Packages differ in case, zero padding and whether they keep the emoji variation selector; this key
    joins them all to the catalogue.
    """
    try:
        points = tuple(int(part, 16) for part in name.split("-"))
    except ValueError as err:
        raise ValueError(f"{name!r} is not a code point sequence") from err
    return tuple(point for point in points if point != VARIATION_SELECTOR_16)


class CodePointIndex:
    """Finds a package's item for an emoji: by exact (case-blind) code points, else ignoring U+FE0F."""

    def __init__(self, items: dict[str, object]):
        self.exact = {name.lower(): item for name, item in sorted(items.items())}
        self.loose: dict[tuple[int, ...], object] = {}
        for name, item in sorted(items.items()):
            self.loose.setdefault(codepoint_key(name), item)

    def get(self, hexcode: str) -> object | None:
        """The item of this code point sequence, or None."""
        exact = self.exact.get(hexcode.lower())
        return exact if exact is not None else self.loose.get(codepoint_key(hexcode))


def _svg_to_image(svg: bytes) -> Image.Image:
    import cairosvg  # imported here so that the rest of the package works without it

    png = cairosvg.svg2png(bytestring=svg, output_width=SVG_RENDER_SIZE, output_height=SVG_RENDER_SIZE)
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return image


class FileRenderer:
    """Renders art stored as one file per emoji, named by code point: SVG (rasterised) or PNG/WebP.

    Raster art under MIN_RASTER_SIZE pixels a side is skipped; None when the emoji has no usable file.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceMissing(f"{self.folder} is not a folder; reinstall its package")
        suffixes = (".svg", *RASTER_SUFFIXES)
        files = {path.stem: path for path in self.folder.iterdir() if path.suffix.lower() in suffixes}
        self.index = CodePointIndex({stem: path for stem, path in files.items() if _is_code_points(stem)})

    def __call__(self, record: EmojiRecord) -> Image.Image | None:
        path = self.index.get(record.hexcode)
        if path is None:
            return None
        if path.suffix.lower() == ".svg":
            image = _svg_to_image(path.read_bytes())
        else:
            with Image.open(path) as opened:
                image = opened.convert("RGBA")
            if min(image.size) < MIN_RASTER_SIZE:
                return None
        return to_square_rgb(image) if has_ink(image) else None


def _is_code_points(name: str) -> bool:
    try:
        codepoint_key(name)
    except ValueError:
        return False
    return True


def iconify_svg(icon_set: dict, name: str) -> bytes:
    """A standalone SVG of one icon of an Iconify JSON set, on a square view box centred on the icon.

    Follows alias chains (an alias may flip its parent) and applies the set's default width and height.
    """
    props: dict = {}
    h_flip = v_flip = False
    rotate = 0
    seen = set()
    while name not in icon_set["icons"]:
        alias = icon_set.get("aliases", {}).get(name)
        if alias is None or name in seen:
            raise KeyError(f"Iconify set {icon_set.get('prefix')!r} has no icon {name!r}")
        seen.add(name)
        props = {**alias, **props}
        h_flip ^= bool(alias.get("hFlip"))
        v_flip ^= bool(alias.get("vFlip"))
        rotate += int(alias.get("rotate", 0))
        name = alias["parent"]
    icon = {**icon_set["icons"][name], **{k: v for k, v in props.items() if k in ("width", "height", "left", "top")}}
    h_flip ^= bool(icon_set["icons"][name].get("hFlip"))
    v_flip ^= bool(icon_set["icons"][name].get("vFlip"))
    rotate += int(icon_set["icons"][name].get("rotate", 0))
    if rotate % 4:
        raise ValueError(f"Iconify icon {name!r} is rotated; rotation is not supported")
    left, top = icon.get("left", icon_set.get("left", 0)), icon.get("top", icon_set.get("top", 0))
    width, height = icon.get("width", icon_set.get("width", 16)), icon.get("height", icon_set.get("height", 16))
    transforms = []
    if h_flip:
        transforms.append(f"translate({2 * left + width} 0) scale(-1 1)")
    if v_flip:
        transforms.append(f"translate(0 {2 * top + height}) scale(1 -1)")
    body = f'<g transform="{" ".join(transforms)}">{icon["body"]}</g>' if transforms else icon["body"]
    side = max(width, height)
    box = f"{left - (side - width) / 2:g} {top - (side - height) / 2:g} {side:g} {side:g}"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{box}" width="{SVG_RENDER_SIZE}" height="{SVG_RENDER_SIZE}">{body}</svg>'
    ).encode()


class IconifyRenderer:
    """Renders an Iconify JSON emoji set, joined to the catalogue through its chars.json (code points -> name)."""

    def __init__(self, icons_json: Path, chars_json: Path):
        for path in (icons_json, chars_json):
            if not Path(path).is_file():
                raise SourceMissing(f"{path} is missing; reinstall its package")
        self.icon_set = json.loads(Path(icons_json).read_text(encoding="utf-8"))
        self.index = CodePointIndex(json.loads(Path(chars_json).read_text(encoding="utf-8")))

    def __call__(self, record: EmojiRecord) -> Image.Image | None:
        name = self.index.get(record.hexcode)
        if name is None:
            return None
        image = _svg_to_image(iconify_svg(self.icon_set, str(name)))
        return to_square_rgb(image) if has_ink(image) else None


def _layout_renderer(source: Source, npm_prefix: Path) -> Renderer:
    if source.layout == "font":
        return NotoRenderer(noto_font_path())
    root = npm_package_dir(source, npm_prefix)
    if source.layout == "iconify":
        return IconifyRenderer(root / source.art, root / source.chars)
    return FileRenderer(root / source.art)


def renderer(source: Source, npm_prefix: Path) -> Renderer:
    """The renderer of an installed source; it renders nothing for the source's skipped subgroups."""
    render = _layout_renderer(source, npm_prefix)
    if not source.skip_subgroups:
        return render
    return lambda record: None if record.subgroup in source.skip_subgroups else render(record)
