/* bcryptprimitives.dll for wine 8.0 (Debian 12), which lacks it: Rust's
 * std (1.78+) takes its randomness from ProcessPrng there, present on every
 * Windows 10+. Test-only, placed beside the .exe under test (a DLL in the
 * application's directory is found first); never shipped. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
