/* G.711 audio in and out of a spandsp fax terminal: decode and feed, pull and encode. */
#include <spandsp.h>

#include "fbglue.h"

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

