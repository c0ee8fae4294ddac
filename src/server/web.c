/*
 * web.c - the live captions page that the gateway serves on `/`, built
 * into the binary.
 *
 * The page is one self-contained file in the tree, src/server/web/index.html
 * (HTML, CSS and plain JavaScript, no build step).  The assembler's .incbin
 * copies its bytes verbatim into .rodata between two symbols, so the binary
 * serves exactly what the file holds and needs nothing on disk at run time.
 * The path is relative to the directory the compiler runs in, which is the
 * repository root (the Makefile's).  The compiler does not see the page as
 * a dependency: the Makefile names it as a prerequisite of this object, so
 * an edit to the page rebuilds it.
 *
 * The bytes are not NUL-terminated; sotto__web_index() gives their length.
 */
#include <stddef.h>

#include "server/gateway.h"

__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".type sotto__web_index_start, @object\n"
        "sotto__web_index_start:\n"
        ".incbin \"src/server/web/index.html\"\n"
        "sotto__web_index_end:\n"
        ".size sotto__web_index_start, sotto__web_index_end - sotto__web_index_start\n"
        ".popsection\n");

/* Defined by the assembly above, in this object only. */
extern const unsigned char sotto__web_index_start[];
extern const unsigned char sotto__web_index_end[];

const unsigned char *sotto__web_index(size_t *len)
{
    *len = (size_t)(sotto__web_index_end - sotto__web_index_start);
    return sotto__web_index_start;
}
