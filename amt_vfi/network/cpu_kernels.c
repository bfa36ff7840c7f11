/* Fused CPU kernels of amt_vfi (loaded by cpu_kernels.py): the decoders' bilinear warps and the
 * composition of the multi-field prediction, each in one pass over memory instead of a chain of PyTorch
 * operations. Tensors come as a base pointer plus element strides in PyTorch's dimension order, so any
 * memory layout works; rows are shared out over PyTorch's own OpenMP threads. */
#include <stdint.h>

/* A sample position clamped to [0, last]: edge replication. NaN gives 0, never an address outside. */
static inline float clamp_position(float position, float last) {
    if (!(position > 0.0f)) return 0.0f;
    return position < last ? position : last;
}

/* The bilinear sample of one channel at a clamped position (x0, y0 its integer part). */
typedef struct {
    int64_t offset, step_x, step_y;
    float w00, w01, w10, w11;
} Bilinear;

static inline Bilinear bilinear_at(float x, float y, int64_t width, int64_t height, int64_t stride_y,
                                   int64_t stride_x) {
    int64_t x0 = (int64_t)x, y0 = (int64_t)y;
    float fx = x - (float)x0, fy = y - (float)y0;
    Bilinear b;
    b.offset = y0 * stride_y + x0 * stride_x;
    b.step_x = x0 < width - 1 ? stride_x : 0; /* the last column has weight fx = 0 on its right */
    b.step_y = y0 < height - 1 ? stride_y : 0;
    b.w00 = (1.0f - fx) * (1.0f - fy);
    b.w01 = fx * (1.0f - fy);
    b.w10 = (1.0f - fx) * fy;
    b.w11 = fx * fy;
    return b;
}

static inline float bilinear_value(const Bilinear *b, const float *p) {
    return b->w00 * p[0] + b->w01 * p[b->step_x] + b->w10 * p[b->step_y] + b->w11 * p[b->step_y + b->step_x];
}

/* out[n, c, y, x] = image[n, c] at (x + flow[n, 0, y, x], y + flow[n, 1, y, x]), for N x C x H x W. */
void amt_warp(const float *image, const int64_t *image_strides, int64_t images, int64_t channels, int64_t height,
              int64_t width, const float *flow, const int64_t *flow_strides, float *out, const int64_t *out_strides,
              int threads) {
    const float last_x = (float)(width - 1), last_y = (float)(height - 1);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t n = 0; n < images; n++) {
        for (int64_t y = 0; y < height; y++) {
            const float *source = image + n * image_strides[0];
            const float *flow_x = flow + n * flow_strides[0] + y * flow_strides[2];
            const float *flow_y = flow_x + flow_strides[1];
            float *row = out + n * out_strides[0] + y * out_strides[2];
            for (int64_t x = 0; x < width; x++) {
                Bilinear b = bilinear_at(clamp_position((float)x + flow_x[x * flow_strides[3]], last_x),
                                         clamp_position((float)y + flow_y[x * flow_strides[3]], last_y), width,
                                         height, image_strides[2], image_strides[3]);
                const float *p = source + b.offset;
                float *o = row + x * out_strides[3];
                if (image_strides[1] == 1 && out_strides[1] == 1) { /* channels last: a vector loop */
                    for (int64_t c = 0; c < channels; c++)
                        o[c] = b.w00 * p[c] + b.w01 * p[c + b.step_x] + b.w10 * p[c + b.step_y] +
                               b.w11 * p[c + b.step_y + b.step_x];
                } else {
                    for (int64_t c = 0; c < channels; c++) o[c * out_strides[1]] = bilinear_value(&b, p + c * image_strides[1]);
                }
            }
        }
    }
}

/* One coordinate of the 2x bilinear upsampling with half-pixel centres (PyTorch's align_corners=False). */
static inline void upsampled_at(int64_t position, int64_t size, int64_t *low, int64_t *high, float *weight) {
    float source = ((float)position + 0.5f) * 0.5f - 0.5f;
    if (source < 0.0f) source = 0.0f;
    *low = (int64_t)source;
    *high = *low < size - 1 ? *low + 1 : *low;
    *weight = source - (float)*low;
}

/* The candidate frames of the multi-field decoder and their average.
 * frames: 2B x 3 x H x W, mean removed (frame 0 of pair b at b, frame 1 at B + b);
 * prediction: B x 8n x H x W: flow corrections t->0 (2n), t->1 (2n), masks after the sigmoid (n), residuals (3n);
 * coarse: 2 x B x 2 x h x w, the flows t->0 and t->1 at half resolution that the corrections refine once
 *   upsampled and doubled; mean: B;
 * candidates: B x n x 3 x H x W, field k = frame 1 warped + mask * (frame 0 warped - frame 1 warped)
 *   + residual + mean; average: B x 3 x H x W. */
void amt_compose(const float *frames, const int64_t *frame_strides, const float *prediction,
                 const int64_t *prediction_strides, const float *coarse, const int64_t *coarse_strides,
                 int64_t coarse_height, int64_t coarse_width, const float *mean, int64_t batch, int64_t fields,
                 int64_t height, int64_t width, float *candidates, const int64_t *candidate_strides, float *average,
                 const int64_t *average_strides, int threads) {
    const float last_x = (float)(width - 1), last_y = (float)(height - 1);
    const int64_t channel = prediction_strides[1];
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t y = 0; y < height; y++) {
            int64_t top, bottom;
            float down;
            upsampled_at(y, coarse_height, &top, &bottom, &down);
            const float *pair_frames[2] = {frames + b * frame_strides[0], frames + (batch + b) * frame_strides[0]};
            const float *row = prediction + b * prediction_strides[0] + y * prediction_strides[2];
            for (int64_t x = 0; x < width; x++) {
                int64_t left, right;
                float across;
                upsampled_at(x, coarse_width, &left, &right, &across);
                float coarse_flow[2][2]; /* direction (t->0, t->1), component (x, y) */
                for (int d = 0; d < 2; d++) {
                    for (int axis = 0; axis < 2; axis++) {
                        const float *plane = coarse + d * coarse_strides[0] + b * coarse_strides[1] +
                                             axis * coarse_strides[2];
                        const float *upper = plane + top * coarse_strides[3], *lower = plane + bottom * coarse_strides[3];
                        float above = (1.0f - across) * upper[left * coarse_strides[4]] + across * upper[right * coarse_strides[4]];
                        float below = (1.0f - across) * lower[left * coarse_strides[4]] + across * lower[right * coarse_strides[4]];
                        coarse_flow[d][axis] = 2.0f * ((1.0f - down) * above + down * below);
                    }
                }
                const float *here = row + x * prediction_strides[3];
                float total[3] = {0.0f, 0.0f, 0.0f};
                for (int64_t k = 0; k < fields; k++) {
                    float warped[2][3];
                    for (int d = 0; d < 2; d++) {
                        const float *correction = here + (2 * fields * d + 2 * k) * channel;
                        Bilinear s = bilinear_at(clamp_position((float)x + correction[0] + coarse_flow[d][0], last_x),
                                                 clamp_position((float)y + correction[channel] + coarse_flow[d][1], last_y),
                                                 width, height, frame_strides[2], frame_strides[3]);
                        for (int c = 0; c < 3; c++)
                            warped[d][c] = bilinear_value(&s, pair_frames[d] + s.offset + c * frame_strides[1]);
                    }
                    float mask = here[(4 * fields + k) * channel];
                    const float *residual = here + (5 * fields + 3 * k) * channel;
                    float *out = candidates + b * candidate_strides[0] + k * candidate_strides[1] +
                                 y * candidate_strides[3] + x * candidate_strides[4];
                    for (int c = 0; c < 3; c++) {
                        float value = warped[1][c] + mask * (warped[0][c] - warped[1][c]) + residual[c * channel] + mean[b];
                        out[c * candidate_strides[2]] = value;
                        total[c] += value;
                    }
                }
                float *mean_out = average + b * average_strides[0] + y * average_strides[2] + x * average_strides[3];
                for (int c = 0; c < 3; c++) mean_out[c * average_strides[1]] = total[c] / (float)fields;
            }
        }
    }
}
