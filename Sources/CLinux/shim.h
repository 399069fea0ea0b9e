// Linux interfaces that Glibc's Swift module map leaves out: epoll and eventfd, for the
// event loops (WaakvlamSystem's Poller), and the CPU's CRC-32C instruction, for the journal.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* Whether waakvlam_crc32c_update may be called: x86-64 with SSE 4.2. */
static inline int waakvlam_crc32c_hardware(void) {
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2) != 0;
#else
    return 0;
#endif
}

/* CRC-32C (Castagnoli) of n bytes, continuing from crc (no initial or final xor here), with
 * SSE 4.2's crc32 instruction, eight bytes at a time. Only if waakvlam_crc32c_hardware(). */
#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static inline uint32_t waakvlam_crc32c_update(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t wide = crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        wide = __builtin_ia32_crc32di(wide, word);
    }
    uint32_t narrow = (uint32_t)wide;
    for (; n > 0; p++, n--) narrow = __builtin_ia32_crc32qi(narrow, *p);
    return narrow;
}
#else
static inline uint32_t waakvlam_crc32c_update(uint32_t crc, const uint8_t *p, size_t n) {
    (void)crc; (void)p; (void)n;
    __builtin_trap(); /* never called: waakvlam_crc32c_hardware() is 0 here */
}
#endif
