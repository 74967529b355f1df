/* Small helpers shared by the C test programs: checks that print the library's last error and
 * exit non-zero, and environment lookups. */
#ifndef WA_TEST_H
#define WA_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload_auth.h"

static inline void wa_test_fail(const char *file, int line, const char *what, int code) {
    char message[1024];
    wa_last_error_message(message, sizeof message);
    fprintf(stderr, "%s:%d: %s -> %s (%d): %s\n", file, line, what, wa_result_name(code), code,
            message);
    exit(1);
}

/* The call must succeed. */
#define CHECK(call)                                                  \
    do {                                                             \
        wa_result check_result_ = (call);                            \
        if (check_result_ != WA_OK) {                                \
            wa_test_fail(__FILE__, __LINE__, #call, check_result_);  \
        }                                                            \
    } while (0)

/* The call must fail with `code`. */
#define EXPECT_CODE(call, code)                                                          \
    do {                                                                                 \
        wa_result expect_result_ = (call);                                               \
        if (expect_result_ != (code)) {                                                  \
            fprintf(stderr, "%s:%d: %s: expected %s, got %s\n", __FILE__, __LINE__, #call, \
                    wa_result_name(code), wa_result_name(expect_result_));               \
            wa_test_fail(__FILE__, __LINE__, #call, expect_result_);                     \
        }                                                                                \
    } while (0)

#define ASSERT(cond)                                                           \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* The calling thread's last error message must contain `needle`. */
#define ASSERT_LAST_ERROR_CONTAINS(needle)                                          \
    do {                                                                            \
        char last_error_[1024];                                                     \
        wa_last_error_message(last_error_, sizeof last_error_);                     \
        if (strstr(last_error_, (needle)) == NULL) {                                \
            fprintf(stderr, "%s:%d: last error %s does not contain %s\n", __FILE__, \
                    __LINE__, last_error_, (needle));                               \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

static inline const char *wa_test_env(const char *name) {
    const char *value = getenv(name);
    if (value == NULL || value[0] == '\0') {
        fprintf(stderr, "the test driver did not set %s\n", name);
        exit(2);
    }
    return value;
}

/* Reads a whole file; the caller frees the buffer. */
static inline unsigned char *wa_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    ASSERT(buf != NULL);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            unsigned char *bigger = realloc(buf, cap);
            ASSERT(bigger != NULL);
            buf = bigger;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

#endif /* WA_TEST_H */
