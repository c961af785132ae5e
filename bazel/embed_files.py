#!/usr/bin/env python3
"""Fills @NAME@ placeholders of a template with the verbatim contents of files.

The Bazel twin of CMake's file(READ) + configure_file(@ONLY) for
edge/demo_page.cc.in: the files land inside C++ raw string literals, so each
one is checked not to contain the literal's closing delimiter.

Usage: embed_files.py TEMPLATE OUTPUT NAME=FILE[:DELIMITER] ...
"""
import sys


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    template_path, output_path = argv[1], argv[2]
    with open(template_path, encoding="utf-8") as f:
        text = f.read()
    for arg in argv[3:]:
        name, _, spec = arg.partition("=")
        path, _, delimiter = spec.partition(":")
        with open(path, encoding="utf-8") as f:
            contents = f.read()
        if delimiter and (")" + delimiter + '"') in contents:
            sys.exit(f'{path} contains the raw string delimiter ){delimiter}"')
        placeholder = "@" + name + "@"
        if placeholder not in text:
            sys.exit(f"{template_path} has no {placeholder}")
        text = text.replace(placeholder, contents)
    with open(output_path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv)
