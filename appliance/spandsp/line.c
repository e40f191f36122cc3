#include <stdlib.h>
#include <string.h>
#include <spandsp.h>

#include "fbglue.h"

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
