/* Our own C beside spandsp: the prototypes of g711.c, ecm.c and line.c.
   The .c files include it after <spandsp.h>; appliance/spandsp/_build.py also hands it to cffi
   (preprocessor lines dropped), so Python sees exactly these declarations and the compiler checks
   them against the definitions.  Keep it free of anything but prototypes and typedefs. */
#ifndef FAXBRIDGE_FBGLUE_H
#define FAXBRIDGE_FBGLUE_H

/* g711.c: one C call per RTP packet instead of three */
int fb_rx_g711(fax_state_t *fax, g711_state_t *codec, const uint8_t *data, int len);
int fb_tx_g711(fax_state_t *fax, g711_state_t *codec, uint8_t *out, int samples);
/* g711.c: a call's whole 20 ms tick (playout into spandsp, spandsp out, RTP header) in one call */
int fb_g711_tick(fax_state_t *fax, g711_state_t *codec, const uint8_t *rx, int rx_len, int fillin,
                 uint8_t *packet, int b1, int seq, uint32_t ts, uint32_t ssrc, int samples);

/* ecm.c: ECM over Class 1, HDLC deframed by the DTE at the image rate */
hdlc_rx_state_t *fb_ecm_rx_new(t30_state_t *t30);
void fb_ecm_rx_put(hdlc_rx_state_t *rx, const uint8_t *data, int len);

/* line.c: two T.31 modems on one line, audio moved in C */
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

#endif
