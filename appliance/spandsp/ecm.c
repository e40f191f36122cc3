#include <spandsp.h>

#include "fbglue.h"

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
