"""cffi builder for the spandsp 0.0.6 binding (API mode).

API mode compiles a small C module against the installed headers, so the C compiler checks every
declaration below against spandsp.h: a signature that drifts (spandsp 3.0 changed several) fails
the build instead of corrupting memory at run time.  Every 0.0.6-specific signature lives here.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from cffi import FFI

CDEF = r"""
typedef struct fax_state_s fax_state_t;
typedef struct t30_state_s t30_state_t;
typedef struct logging_state_s logging_state_t;
typedef struct g711_state_s g711_state_t;
typedef struct t38_terminal_state_s t38_terminal_state_t;
typedef struct t38_core_state_s t38_core_state_t;
typedef int (t38_tx_packet_handler_t)(t38_core_state_t *s, void *user_data, const uint8_t *buf, int len,
                                      int count);

typedef struct {
    int bit_rate;
    int error_correcting_mode;
    int pages_tx;
    int pages_rx;
    int pages_in_file;
    int x_resolution;
    int y_resolution;
    int width;
    int length;
    int image_size;
    int encoding;
    int bad_rows;
    int longest_bad_row_run;
    int error_correcting_mode_retries;
    int current_status;
    ...;
} t30_stats_t;

typedef int (t30_phase_b_handler_t)(t30_state_t *s, void *user_data, int result);
typedef int (t30_phase_d_handler_t)(t30_state_t *s, void *user_data, int result);
typedef void (t30_phase_e_handler_t)(t30_state_t *s, void *user_data, int completion_code);
typedef void (t30_real_time_frame_handler_t)(t30_state_t *s, void *user_data, int direction,
                                             const uint8_t msg[], int len);
typedef void (*message_handler_func_t)(int level, const char *text);

fax_state_t *fax_init(fax_state_t *s, int calling_party);
int fax_free(fax_state_t *s);
int fax_rx(fax_state_t *s, int16_t *amp, int len);
int fax_rx_fillin(fax_state_t *s, int len);
int fax_tx(fax_state_t *s, int16_t *amp, int max_len);
void fax_set_transmit_on_idle(fax_state_t *s, int transmit_on_idle);
void fax_set_tep_mode(fax_state_t *s, int use_tep);
t30_state_t *fax_get_t30_state(fax_state_t *s);
logging_state_t *fax_get_logging_state(fax_state_t *s);

void t30_set_rx_file(t30_state_t *s, const char *file, int stop_page);
void t30_set_tx_file(t30_state_t *s, const char *file, int start_page, int stop_page);
int t30_set_tx_ident(t30_state_t *s, const char *id);
const char *t30_get_rx_ident(t30_state_t *s);
const char *t30_get_rx_vendor(t30_state_t *s);
const char *t30_get_rx_model(t30_state_t *s);
int t30_set_ecm_capability(t30_state_t *s, int enabled);
int t30_set_rx_encoding(t30_state_t *s, int encoding);
int t30_set_supported_modems(t30_state_t *s, int supported_modems);
int t30_set_supported_compressions(t30_state_t *s, int supported_compressions);
int t30_set_supported_resolutions(t30_state_t *s, int supported_resolutions);
int t30_set_supported_image_sizes(t30_state_t *s, int supported_image_sizes);
void t30_set_phase_b_handler(t30_state_t *s, t30_phase_b_handler_t *handler, void *user_data);
void t30_set_phase_d_handler(t30_state_t *s, t30_phase_d_handler_t *handler, void *user_data);
void t30_set_phase_e_handler(t30_state_t *s, t30_phase_e_handler_t *handler, void *user_data);
void t30_set_real_time_frame_handler(t30_state_t *s, t30_real_time_frame_handler_t *handler,
                                     void *user_data);
void t30_get_transfer_statistics(t30_state_t *s, t30_stats_t *t);
void t30_terminate(t30_state_t *s);
logging_state_t *t30_get_logging_state(t30_state_t *s);
const char *t30_completion_code_to_str(int result);
const char *t30_frametype(uint8_t x);

t38_terminal_state_t *t38_terminal_init(t38_terminal_state_t *s, int calling_party,
                                        t38_tx_packet_handler_t *tx_packet_handler, void *tx_packet_user_data);
int t38_terminal_free(t38_terminal_state_t *s);
int t38_terminal_send_timeout(t38_terminal_state_t *s, int samples);
void t38_terminal_set_config(t38_terminal_state_t *s, int config);
void t38_terminal_set_tep_mode(t38_terminal_state_t *s, int use_tep);
void t38_terminal_set_fill_bit_removal(t38_terminal_state_t *s, int remove);
t30_state_t *t38_terminal_get_t30_state(t38_terminal_state_t *s);
t38_core_state_t *t38_terminal_get_t38_core_state(t38_terminal_state_t *s);
logging_state_t *t38_terminal_get_logging_state(t38_terminal_state_t *s);
int t38_core_rx_ifp_packet(t38_core_state_t *s, const uint8_t *buf, int len, uint16_t seq_no);
void t38_set_t38_version(t38_core_state_t *s, int t38_version);
void t38_set_data_rate_management_method(t38_core_state_t *s, int method);
void t38_set_fastest_image_data_rate(t38_core_state_t *s, int max_rate);
void t38_set_max_datagram_size(t38_core_state_t *s, int max_datagram_size);
void t38_set_max_buffer_size(t38_core_state_t *s, int max_buffer_size);
logging_state_t *t38_core_get_logging_state(t38_core_state_t *s);

int span_log_set_level(logging_state_t *s, int level);
int span_log_set_tag(logging_state_t *s, const char *tag);
void span_log_set_message_handler(logging_state_t *s, message_handler_func_t func);
void span_set_message_handler(message_handler_func_t func);

g711_state_t *g711_init(g711_state_t *s, int mode);
int g711_free(g711_state_t *s);
int g711_decode(g711_state_t *s, int16_t amp[], const uint8_t g711_data[], int g711_bytes);
int g711_encode(g711_state_t *s, uint8_t g711_data[], const int16_t amp[], int len);

/* our own glue, see SOURCE: one C call per RTP packet instead of three */
int fb_rx_g711(fax_state_t *fax, g711_state_t *codec, const uint8_t *data, int len);
int fb_tx_g711(fax_state_t *fax, g711_state_t *codec, uint8_t *out, int samples);

static const int G711_ALAW;
static const int G711_ULAW;
static const int T30_SUPPORT_V27TER;
static const int T30_SUPPORT_V29;
static const int T30_SUPPORT_V17;
static const int T30_SUPPORT_T4_1D_COMPRESSION;
static const int T30_SUPPORT_T4_2D_COMPRESSION;
static const int T30_SUPPORT_T6_COMPRESSION;
static const int T30_SUPPORT_STANDARD_RESOLUTION;
static const int T30_SUPPORT_FINE_RESOLUTION;
static const int T30_SUPPORT_SUPERFINE_RESOLUTION;
static const int T30_SUPPORT_R8_RESOLUTION;
static const int T30_SUPPORT_R16_RESOLUTION;
static const int T30_SUPPORT_215MM_WIDTH;
static const int T30_SUPPORT_255MM_WIDTH;
static const int T30_SUPPORT_303MM_WIDTH;
static const int T30_SUPPORT_UNLIMITED_LENGTH;
static const int T30_SUPPORT_A4_LENGTH;
static const int T30_SUPPORT_B4_LENGTH;
static const int T30_SUPPORT_US_LETTER_LENGTH;
static const int T30_SUPPORT_US_LEGAL_LENGTH;
static const int T4_COMPRESSION_ITU_T4_1D;
static const int T4_COMPRESSION_ITU_T4_2D;
static const int T4_COMPRESSION_ITU_T6;
static const int T30_ERR_OK;
static const int T30_ERR_CALLDROPPED;
static const int T38_TERMINAL_OPTION_NO_PACING;
static const int T38_TERMINAL_OPTION_REGULAR_INDICATORS;
static const int T38_DATA_RATE_MANAGEMENT_LOCAL_TCF;
static const int T38_DATA_RATE_MANAGEMENT_TRANSFERRED_TCF;
static const int SPAN_LOG_SHOW_TAG;
static const int SPAN_LOG_SHOW_SEVERITY;
static const int SPAN_LOG_FLOW;
static const int SPAN_LOG_PROTOCOL_WARNING;

extern "Python" int _fb_phase_b(t30_state_t *, void *, int);
extern "Python" int _fb_phase_d(t30_state_t *, void *, int);
extern "Python" void _fb_phase_e(t30_state_t *, void *, int);
extern "Python" void _fb_frame(t30_state_t *, void *, int, const uint8_t *, int);
extern "Python" void _fb_log(int, const char *);
extern "Python" int _fb_t38_tx(t38_core_state_t *, void *, const uint8_t *, int, int);
"""

SOURCE = r"""
#include <spandsp.h>

int fb_rx_g711(fax_state_t *fax, g711_state_t *codec, const uint8_t *data, int len)
{
    int16_t amp[1024];
    int done = 0;
    while (done < len) {
        int n = len - done;
        if (n > 1024)
            n = 1024;
        n = g711_decode(codec, amp, data + done, n);
        fax_rx(fax, amp, n);
        done += n;
    }
    return done;
}

/* Fills exactly `samples` bytes: spandsp may return fewer samples (it is idle), pad with silence. */
int fb_tx_g711(fax_state_t *fax, g711_state_t *codec, uint8_t *out, int samples)
{
    int16_t amp[1024];
    int n;
    if (samples > 1024)
        samples = 1024;
    n = fax_tx(fax, amp, samples);
    if (n < 0)
        n = 0;
    for (int i = n; i < samples; i++)
        amp[i] = 0;
    g711_encode(codec, out, amp, samples);
    return n;
}
"""


def _pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args, "spandsp"], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return shlex.split(out.stdout)


def _include_dirs() -> list[str]:
    """spandsp.h is multiarch (/usr/include/<triplet>/spandsp.h); find the triplet, never assume x86_64."""
    dirs = [f[2:] for f in _pkg_config("--cflags-only-I") if f.startswith("-I")]
    try:
        triplet = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        triplet = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    if triplet and os.path.isdir(f"/usr/include/{triplet}"):
        dirs.append(f"/usr/include/{triplet}")
    return dirs


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "appliance.spandsp._spandsp",
    SOURCE,
    include_dirs=_include_dirs(),
    libraries=["spandsp", "tiff"],
    extra_compile_args=["-O2", "-Wno-deprecated-declarations"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
