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


/* T.30 with our own front-end (the Class 1 modem driver): spandsp decides, the modem modulates */
typedef void (t30_set_handler_t)(void *user_data, int type, int bit_rate, int short_train, int use_hdlc);
typedef void (t30_send_hdlc_handler_t)(void *user_data, const uint8_t msg[], int len);
t30_state_t *t30_init(t30_state_t *s, int calling_party,
                      t30_set_handler_t *set_rx_type_handler, void *set_rx_type_user_data,
                      t30_set_handler_t *set_tx_type_handler, void *set_tx_type_user_data,
                      t30_send_hdlc_handler_t *send_hdlc_handler, void *send_hdlc_user_data);
int t30_free(t30_state_t *s);
int t30_restart(t30_state_t *s);
int t30_call_active(t30_state_t *s);
void t30_front_end_status(void *user_data, int status);
int t30_non_ecm_get_chunk(void *user_data, uint8_t buf[], int max_len);
void t30_non_ecm_put_chunk(void *user_data, const uint8_t buf[], int len);
void t30_non_ecm_put_bit(void *user_data, int bit);
void t30_hdlc_accept(void *user_data, const uint8_t msg[], int len, int ok);
void t30_timer_update(t30_state_t *s, int samples);
static const int T30_MODEM_NONE;
static const int T30_MODEM_PAUSE;
static const int T30_MODEM_CED;
static const int T30_MODEM_CNG;
static const int T30_MODEM_V21;
static const int T30_MODEM_V27TER;
static const int T30_MODEM_V29;
static const int T30_MODEM_V17;
static const int T30_MODEM_DONE;
static const int T30_FRONT_END_SEND_STEP_COMPLETE;
static const int T30_FRONT_END_RECEIVE_COMPLETE;
static const int T30_FRONT_END_SIGNAL_PRESENT;
static const int T30_FRONT_END_SIGNAL_ABSENT;
static const int T30_FRONT_END_CED_PRESENT;
static const int T30_FRONT_END_CNG_PRESENT;
static const int SIG_STATUS_CARRIER_DOWN;
static const int SIG_STATUS_CARRIER_UP;
static const int SIG_STATUS_TRAINING_SUCCEEDED;
static const int SIG_STATUS_TRAINING_FAILED;
static const int SIG_STATUS_END_OF_DATA;
/* ECM over Class 1: HDLC framing done by the DTE at the image rate (our glue, see SOURCE) */
typedef struct hdlc_rx_state_s hdlc_rx_state_t;
hdlc_rx_state_t *fb_ecm_rx_new(t30_state_t *t30);
void fb_ecm_rx_put(hdlc_rx_state_t *rx, const uint8_t *data, int len);
int hdlc_rx_free(hdlc_rx_state_t *s);
extern "Python" void _fb_fe_set_rx(void *, int, int, int, int);
extern "Python" void _fb_fe_set_tx(void *, int, int, int, int);
extern "Python" void _fb_fe_send_hdlc(void *, const uint8_t *, int);

/* T.4: page data from a Class 2 modem into TIFF, and TIFF pages back into T.4 (the emulator) */
typedef struct t4_state_s t4_rx_state_t;
typedef struct t4_state_s t4_tx_state_t;
typedef struct {
    int pages_transferred;
    int pages_in_file;
    int width;
    int length;
    int bad_rows;
    int longest_bad_row_run;
    int x_resolution;
    int y_resolution;
    int encoding;
    int line_image_size;
} t4_stats_t;
t4_rx_state_t *t4_rx_init(t4_rx_state_t *s, const char *file, int output_encoding);
int t4_rx_start_page(t4_rx_state_t *s);
int t4_rx_put_bit(t4_rx_state_t *s, int bit);
int t4_rx_put_chunk(t4_rx_state_t *s, const uint8_t buf[], int len);
int t4_rx_end_page(t4_rx_state_t *s);
void t4_rx_set_rx_encoding(t4_rx_state_t *s, int encoding);
void t4_rx_set_image_width(t4_rx_state_t *s, int width);
void t4_rx_set_y_resolution(t4_rx_state_t *s, int resolution);
void t4_rx_set_x_resolution(t4_rx_state_t *s, int resolution);
void t4_rx_set_far_ident(t4_rx_state_t *s, const char *ident);
void t4_rx_set_vendor(t4_rx_state_t *s, const char *vendor);
void t4_rx_set_model(t4_rx_state_t *s, const char *model);
void t4_rx_get_transfer_statistics(t4_rx_state_t *s, t4_stats_t *t);
int t4_rx_release(t4_rx_state_t *s);
int t4_rx_free(t4_rx_state_t *s);
t4_tx_state_t *t4_tx_init(t4_tx_state_t *s, const char *file, int start_page, int stop_page);
int t4_tx_start_page(t4_tx_state_t *s);
int t4_tx_restart_page(t4_tx_state_t *s);
int t4_tx_end_page(t4_tx_state_t *s);
int t4_tx_get_chunk(t4_tx_state_t *s, uint8_t buf[], int max_len);
void t4_tx_set_tx_encoding(t4_tx_state_t *s, int encoding);
void t4_tx_set_min_bits_per_row(t4_tx_state_t *s, int bits);
void t4_tx_set_local_ident(t4_tx_state_t *s, const char *ident);
void t4_tx_set_header_info(t4_tx_state_t *s, const char *info);
int t4_tx_get_y_resolution(t4_tx_state_t *s);
int t4_tx_get_x_resolution(t4_tx_state_t *s);
int t4_tx_get_image_width(t4_tx_state_t *s);
int t4_tx_get_pages_in_file(t4_tx_state_t *s);
int t4_tx_get_current_page_in_file(t4_tx_state_t *s);
void t4_tx_get_transfer_statistics(t4_tx_state_t *s, t4_stats_t *t);
int t4_tx_release(t4_tx_state_t *s);
int t4_tx_free(t4_tx_state_t *s);

/* T.31: a Class 1 fax modem emulated on audio (the DTE side speaks AT commands) */
typedef struct t31_state_s t31_state_t;
typedef struct at_state_s at_state_t;
typedef int (at_tx_handler_t)(at_state_t *s, void *user_data, const uint8_t *buf, size_t len);
typedef int (t31_modem_control_handler_t)(t31_state_t *s, void *user_data, int op, const char *num);
t31_state_t *t31_init(t31_state_t *s, at_tx_handler_t *at_tx_handler, void *at_tx_user_data,
                      t31_modem_control_handler_t *modem_control_handler, void *modem_control_user_data,
                      t38_tx_packet_handler_t *tx_t38_packet_handler, void *tx_t38_packet_user_data);
int t31_free(t31_state_t *s);
int t31_at_rx(t31_state_t *s, const char *t, int len);
int t31_rx(t31_state_t *s, int16_t amp[], int len);
int t31_rx_fillin(t31_state_t *s, int len);
int t31_tx(t31_state_t *s, int16_t amp[], int max_len);
void t31_call_event(t31_state_t *s, int event);
void t31_set_transmit_on_idle(t31_state_t *s, int transmit_on_idle);
void t31_set_tep_mode(t31_state_t *s, int use_tep);
logging_state_t *t31_get_logging_state(t31_state_t *s);
void at_set_call_info(at_state_t *s, char const *id, char const *value);
void at_reset_call_info(at_state_t *s);

/* our own glue: two T.31 modems on one line, audio moved in C (see SOURCE) */
typedef struct fb_line_s fb_line_t;
fb_line_t *fb_line_new(t31_state_t *a, t31_state_t *b);
void fb_line_free(fb_line_t *line);
void fb_line_set_faults(fb_line_t *line, int noise_amp, int drop_per_million, uint32_t seed);
int fb_line_set_delay(fb_line_t *line, int samples);
int fb_line_step(fb_line_t *line, int samples);
int fb_line_pages(fb_line_t *line);
int fb_line_frames(fb_line_t *line);
int fb_line_dropped(fb_line_t *line);
int fb_line_last_fcf(fb_line_t *line);
/* make end 0 (a) or 1 (b) a spandsp fax terminal (a Class 2.0 modem's T.30) instead of its T.31 */
int fb_line_set_fax_end(fb_line_t *line, int end, fax_state_t *fax);

static const int AT_MODEM_CONTROL_CALL;
static const int AT_MODEM_CONTROL_ANSWER;
static const int AT_MODEM_CONTROL_HANGUP;
static const int AT_MODEM_CONTROL_OFFHOOK;
static const int AT_MODEM_CONTROL_ONHOOK;
static const int AT_MODEM_CONTROL_DTR;
static const int AT_MODEM_CONTROL_RTS;
static const int AT_MODEM_CONTROL_CTS;
static const int AT_MODEM_CONTROL_CAR;
static const int AT_MODEM_CONTROL_RNG;
static const int AT_MODEM_CONTROL_DSR;
static const int AT_MODEM_CONTROL_SETID;
static const int AT_MODEM_CONTROL_RESTART;
static const int AT_MODEM_CONTROL_DTE_TIMEOUT;
static const int AT_CALL_EVENT_ALERTING;
static const int AT_CALL_EVENT_CONNECTED;
static const int AT_CALL_EVENT_ANSWERED;
static const int AT_CALL_EVENT_BUSY;
static const int AT_CALL_EVENT_NO_DIALTONE;
static const int AT_CALL_EVENT_NO_ANSWER;
static const int AT_CALL_EVENT_HANGUP;

extern "Python" int _fb_t31_at_tx(at_state_t *, void *, const uint8_t *, size_t);
extern "Python" int _fb_t31_modem_control(t31_state_t *, void *, int, const char *);
extern "Python" int _fb_t31_t38_tx(t38_core_state_t *, void *, const uint8_t *, int, int);
"""

SOURCE = r"""
#include <stdlib.h>
#include <string.h>
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

/* ECM over Class 1.  Most Class 1 modems cannot do HDLC at the image rates (+FRH=146 is ERROR
   on spandsp's own T.31), so, like HylaFAX, the DTE deframes the +FRM bit stream itself.
   Class 1 data has the first bit on the line in the LSB; spandsp's hdlc_rx_put_byte wants it
   in the MSB: reverse each byte.  Frames go straight to T.30 with their FCS verdict. */
hdlc_rx_state_t *fb_ecm_rx_new(t30_state_t *t30)
{
    return hdlc_rx_init(NULL, FALSE, TRUE, 5, t30_hdlc_accept, t30);
}

void fb_ecm_rx_put(hdlc_rx_state_t *rx, const uint8_t *data, int len)
{
    for (int i = 0; i < len; i++) {
        uint8_t b = data[i];
        b = (uint8_t) (((b & 0xF0) >> 4) | ((b & 0x0F) << 4));
        b = (uint8_t) (((b & 0xCC) >> 2) | ((b & 0x33) << 2));
        b = (uint8_t) (((b & 0xAA) >> 1) | ((b & 0x55) << 1));
        hdlc_rx_put_byte(rx, b);
    }
}

/* Two T.31 modems on one phone line.  Each step moves `samples` of audio both ways (a->b, b->a),
   adds the configured white noise, zeroes whole blocks with the configured probability, and taps
   both directions with a V.21 HDLC receiver: a post-page command (MPS/EOP/EOM, or PPS-MPS/EOP/EOM
   in ECM) followed by MCF from the other side counts one page through. */
#define FB_T30_MPS 0x4E
#define FB_T30_EOP 0x2E
#define FB_T30_EOM 0x8E
#define FB_T30_PPS 0xBE
#define FB_T30_MCF 0x8C
#define FB_MAX_DELAY 8000

struct fb_line_s;
typedef struct fb_line_s fb_line_t;
typedef struct {
    struct fb_line_s *line;
    int dir;
    fsk_rx_state_t *fsk;
    hdlc_rx_state_t *hdlc;
} fb_tap_t;

struct fb_line_s {
    t31_state_t *a;
    t31_state_t *b;
    fax_state_t *fax[2];      /* when set, this end is a fax terminal, not the T.31 modem */
    fb_tap_t tap[2];
    int noise_amp;
    uint32_t drop_ppm;
    uint32_t seed;
    int pending_dir;          /* direction of the last unanswered post-page command, or -1 */
    int pages;
    int frames;
    int dropped;
    int last_fcf;
    int delay;                /* one-way delay in samples, both directions (0..FB_MAX_DELAY) */
    int delay_pos[2];
    int16_t delay_buf[2][FB_MAX_DELAY];
};

static void fb_tap_frame(void *user_data, const uint8_t *pkt, int len, int ok)
{
    fb_tap_t *tap = (fb_tap_t *) user_data;
    struct fb_line_s *line = tap->line;
    int fcf;
    if (len < 3 || !ok)
        return;  /* len < 0: carrier/status reports */
    fcf = pkt[2] & 0xFE;
    line->frames++;
    line->last_fcf = fcf;
    if (fcf == FB_T30_MPS || fcf == FB_T30_EOP || fcf == FB_T30_EOM) {
        line->pending_dir = tap->dir;
    } else if (fcf == FB_T30_PPS && len >= 4) {
        int fcf2 = pkt[3] & 0xFE;
        if (fcf2 == FB_T30_MPS || fcf2 == FB_T30_EOP || fcf2 == FB_T30_EOM)
            line->pending_dir = tap->dir;
    } else if (fcf == FB_T30_MCF && line->pending_dir >= 0 && line->pending_dir != tap->dir) {
        line->pages++;
        line->pending_dir = -1;
    }
}

static uint32_t fb_rand(uint32_t *s)
{
    /* xorshift32: reproducible faults from a seed */
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x ? x : 2463534242u;
    return *s;
}

fb_line_t *fb_line_new(t31_state_t *a, t31_state_t *b)
{
    fb_line_t *line = calloc(1, sizeof(*line));
    if (line == NULL)
        return NULL;
    line->a = a;
    line->b = b;
    line->pending_dir = -1;
    line->seed = 2463534242u;
    for (int i = 0; i < 2; i++) {
        line->tap[i].line = line;
        line->tap[i].dir = i;
        line->tap[i].hdlc = hdlc_rx_init(NULL, FALSE, FALSE, 5, fb_tap_frame, &line->tap[i]);
        line->tap[i].fsk = fsk_rx_init(NULL, &preset_fsk_specs[FSK_V21CH2], FSK_FRAME_MODE_SYNC,
                                       (put_bit_func_t) hdlc_rx_put_bit, line->tap[i].hdlc);
    }
    return line;
}

void fb_line_free(fb_line_t *line)
{
    if (line == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        fsk_rx_free(line->tap[i].fsk);
        hdlc_rx_free(line->tap[i].hdlc);
    }
    free(line);
}

/* A line has latency: the far modem hears us `samples` later.  Without it, a DTE that answers
   the instant carrier drops (efax after TCF) starts its CFR before the other DTE has even been
   told its TCF went out, and that DTE's +FRS=1 then swallows the CFR. */
int fb_line_set_delay(fb_line_t *line, int samples)
{
    if (samples < 0 || samples > FB_MAX_DELAY)
        return -1;
    line->delay = samples;
    line->delay_pos[0] = line->delay_pos[1] = 0;
    memset(line->delay_buf, 0, sizeof(line->delay_buf));
    return 0;
}

void fb_line_set_faults(fb_line_t *line, int noise_amp, int drop_per_million, uint32_t seed)
{
    line->noise_amp = noise_amp;
    line->drop_ppm = drop_per_million < 0 ? 0 : (uint32_t) drop_per_million;
    line->seed = seed ? seed : 2463534242u;
}

int fb_line_set_fax_end(fb_line_t *line, int end, fax_state_t *fax)
{
    if (end < 0 || end > 1)
        return -1;
    line->fax[end] = fax;
    return 0;
}

static void fb_line_carry(fb_line_t *line, int dir, t31_state_t *from, t31_state_t *to, int samples)
{
    int16_t amp[1024];
    fax_state_t *fax_from = line->fax[dir];
    fax_state_t *fax_to = line->fax[1 - dir];
    int n = fax_from ? fax_tx(fax_from, amp, samples) : t31_tx(from, amp, samples);
    if (n < 0)
        n = 0;
    for (int i = n; i < samples; i++)
        amp[i] = 0;
    fsk_rx(line->tap[dir].fsk, amp, samples);
    if (line->delay > 0) {
        int16_t *buf = line->delay_buf[dir];
        int pos = line->delay_pos[dir];
        for (int i = 0; i < samples; i++) {
            int16_t x = buf[pos];
            buf[pos] = amp[i];
            amp[i] = x;
            if (++pos >= line->delay)
                pos = 0;
        }
        line->delay_pos[dir] = pos;
    }
    if (line->drop_ppm && fb_rand(&line->seed) % 1000000u < line->drop_ppm) {
        for (int i = 0; i < samples; i++)
            amp[i] = 0;
        line->dropped++;
    }
    if (line->noise_amp > 0) {
        for (int i = 0; i < samples; i++) {
            int v = amp[i] + (int) (fb_rand(&line->seed) % (2u * line->noise_amp + 1u)) - line->noise_amp;
            amp[i] = (int16_t) (v > 32767 ? 32767 : v < -32768 ? -32768 : v);
        }
    }
    if (fax_to)
        fax_rx(fax_to, amp, samples);
    else
        t31_rx(to, amp, samples);
}

/* One block both ways; returns the pages counted so far. */
int fb_line_step(fb_line_t *line, int samples)
{
    if (samples > 1024)
        samples = 1024;
    fb_line_carry(line, 0, line->a, line->b, samples);
    fb_line_carry(line, 1, line->b, line->a, samples);
    return line->pages;
}

int fb_line_pages(fb_line_t *line) { return line->pages; }
int fb_line_frames(fb_line_t *line) { return line->frames; }
int fb_line_dropped(fb_line_t *line) { return line->dropped; }
int fb_line_last_fcf(fb_line_t *line) { return line->last_fcf; }
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
