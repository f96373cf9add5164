/*
 * glibc 2.38 added C23 variants of sscanf/strtol/strtoul (__isoc23_*) and
 * compilers targeting it call them. uWebSockets.js' prebuilt linux-x64
 * binaries were linked that way, so they do not load on glibc 2.36
 * (Debian bookworm). The C23 variants differ from the classic ones only in
 * accepting "0b" binary prefixes, which uWS never parses, so forwarding to
 * the classic functions is exact for its use.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int __isoc23_sscanf(const char *str, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int matched = vsscanf(str, format, args);
    va_end(args);
    return matched;
}

long __isoc23_strtol(const char *str, char **end, int base) {
    return strtol(str, end, base);
}

unsigned long __isoc23_strtoul(const char *str, char **end, int base) {
    return strtoul(str, end, base);
}
