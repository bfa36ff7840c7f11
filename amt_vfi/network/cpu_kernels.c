/* Fused CPU kernels of amt_vfi (loaded by cpu_kernels.py): the decoders' bilinear warps, the
 * composition of the multi-field prediction, comb_block, the correlation lookup and in-place activations,
 * each in one pass over memory instead of a chain of PyTorch operations, and convolutions by Winograd's
 * transform. Tensors come as a base pointer plus element strides in PyTorch's dimension order, so any
 * memory layout works (the Winograd convolution takes channels-last tensors); rows or blocks are shared
 * out over PyTorch's own OpenMP threads. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

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
                    for (int64_t c = 0; c < channels; c++) o[c] = bilinear_value(&b, p + c);
                } else {
                    for (int64_t c = 0; c < channels; c++)
                        o[c * out_strides[1]] = bilinear_value(&b, p + c * image_strides[1]);
                }
            }
        }
    }
}

static inline float prelu(float value, float slope) { return value > 0.0f ? value : slope * value; }

/* e^x to about 2 ulp (Cephes' polynomial after a reduction by powers of 2), in plain arithmetic that the
 * compiler vectorises, unlike a call to expf. */
static inline float exp_approx(float x) {
    x = x > 88.0f ? 88.0f : x; /* NaN stays NaN */
    x = x < -88.0f ? -88.0f : x;
    const float round = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer (floorf would not vectorise) */
    float n = (x * 1.44269504088896341f + round) - round;
    n = n > -126.0f ? n : -126.0f; /* NaN too: a defined power of 2, and the polynomial stays NaN */
    x = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * x + 1.3981999507e-3f;
    p = p * x + 8.3334519073e-3f;
    p = p * x + 4.1665795894e-2f;
    p = p * x + 1.6666665459e-1f;
    p = p * x + 5.0000001201e-1f;
    p = p * x * x + x + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float power;
    __builtin_memcpy(&power, &bits, sizeof power);
    return p * power;
}

static inline float sigmoid(float value) { return 1.0f / (1.0f + exp_approx(-value)); }

/* How a row of a B x C x H x W tensor is walked so that the inner loop is the contiguous one: pixel by
 * pixel with the channels innermost when they are (channels last), else channel by channel along it. */
typedef struct {
    int channels_last;
    int64_t inner, outer, inner_stride, outer_stride;
} RowWalk;

static inline RowWalk row_walk(const int64_t *strides, int64_t channels, int64_t width) {
    const int last = strides[1] == 1;
    RowWalk walk = {last, last ? channels : width, last ? width : channels, last ? 1 : strides[3],
                    last ? strides[3] : strides[1]};
    return walk;
}

/* x = PReLU(x) (one slope per channel) or, with no slopes, sigmoid(x), in place, for B x C x H x W, a
 * row at a time (see RowWalk). The sigmoid serves the mask channels of decoder1's prediction: a slice of a channels-last tensor, which
 * PyTorch's sigmoid walks element by element, 17 times slower than this vector loop. */
void amt_activate(float *x, const int64_t *strides, const float *slopes, int64_t batch, int64_t channels,
                  int64_t height, int64_t width, int threads) {
    const RowWalk walk = row_walk(strides, channels, width);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t y = 0; y < height; y++) {
            float *row = x + b * strides[0] + y * strides[2];
            for (int64_t o = 0; o < walk.outer; o++) {
                float *p = row + o * walk.outer_stride;
                if (slopes == 0) {
#pragma omp simd
                    for (int64_t i = 0; i < walk.inner; i++)
                        p[i * walk.inner_stride] = sigmoid(p[i * walk.inner_stride]);
                } else if (walk.channels_last) {
#pragma omp simd
                    for (int64_t c = 0; c < channels; c++) p[c] = prelu(p[c], slopes[c]);
                } else {
                    const float slope = slopes[o];
#pragma omp simd
                    for (int64_t i = 0; i < walk.inner; i++)
                        p[i * walk.inner_stride] = prelu(p[i * walk.inner_stride], slope);
                }
            }
        }
    }
}

/* Instance norm in place over H x W per sample and channel (biased variance, eps inside the root), then
 * ReLU if asked: one pass for the statistics (sums in double, so E[x^2] - E[x]^2 loses nothing that
 * matters), one to normalise, instead of PyTorch's chain of six. Rows are shared out over the threads;
 * their partial sums meet in `sums` once every thread has read its rows. Returns 1 when out of memory
 * (x untouched), else 0. */
int amt_instance_norm(float *x, const int64_t *strides, int64_t batch, int64_t channels, int64_t height,
                      int64_t width, float eps, int relu, int threads) {
    const int64_t planes = batch * channels, rows = batch * height;
    const RowWalk walk = row_walk(strides, channels, width);
    double *sums = calloc((size_t)(threads * planes * 2), sizeof(double));
    float *shift = malloc((size_t)(planes * 2) * sizeof(float));
    if (sums == 0 || shift == 0) {
        free(sums);
        free(shift);
        return 1;
    }
    float *scale = shift + planes;
#pragma omp parallel num_threads(threads)
    {
        const int64_t thread = omp_get_thread_num(), count = omp_get_num_threads();
        const int64_t first = rows * thread / count, last = rows * (thread + 1) / count;
        double *total = sums + thread * planes * 2, *squares = total + planes;
        for (int64_t r = first; r < last; r++) {
            const int64_t b = r / height;
            const float *row = x + b * strides[0] + (r % height) * strides[2];
            double *t = total + b * channels, *q = squares + b * channels;
            for (int64_t o = 0; o < walk.outer; o++) {
                const float *p = row + o * walk.outer_stride;
                if (walk.channels_last) {
#pragma omp simd
                    for (int64_t c = 0; c < channels; c++) {
                        t[c] += p[c];
                        q[c] += (double)p[c] * p[c];
                    }
                } else {
                    double sum = 0.0, square = 0.0;
#pragma omp simd reduction(+ : sum, square)
                    for (int64_t i = 0; i < walk.inner; i++) {
                        const double v = p[i * walk.inner_stride];
                        sum += v;
                        square += v * v;
                    }
                    t[o] += sum;
                    q[o] += square;
                }
            }
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t plane = 0; plane < planes; plane++) {
            double sum = 0.0, square = 0.0;
            for (int64_t other = 0; other < count; other++) {
                sum += sums[other * planes * 2 + plane];
                square += sums[other * planes * 2 + planes + plane];
            }
            const double area = (double)(height * width), mean = sum / area;
            double variance = square / area - mean * mean;
            variance = variance > 0.0 ? variance : 0.0;
            shift[plane] = (float)mean;
            scale[plane] = (float)(1.0 / sqrt(variance + (double)eps));
        }
        /* (the loop's implied barrier: every statistic is ready) */
        for (int64_t r = first; r < last; r++) {
            const int64_t b = r / height;
            float *row = x + b * strides[0] + (r % height) * strides[2];
            const float *m = shift + b * channels, *k = scale + b * channels;
            for (int64_t o = 0; o < walk.outer; o++) {
                float *p = row + o * walk.outer_stride;
#pragma omp simd
                for (int64_t i = 0; i < walk.inner; i++) {
                    const int64_t c = walk.channels_last ? i : o;
                    const float v = (p[i * walk.inner_stride] - m[c]) * k[c];
                    p[i * walk.inner_stride] = relu && v < 0.0f ? 0.0f : v;
                }
            }
        }
    }
    free(sums);
    free(shift);
    return 0;
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
 * prediction: B x 8n x H x W: flow corrections t->0 (2n), t->1 (2n), masks after the sigmoid (n), residuals (3n),
 *   given in phases (MultiFieldDecoder.predict_phases): B x 4*8n x (h+1) x (w+1), channel c of output pixel
 *   (Y, X) at channel 4c + 2*((Y+1)&1) + ((X+1)&1) of window ((Y+1)>>1, (X+1)>>1);
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
    const int64_t channel = 4 * prediction_strides[1]; /* between channels of one phase */
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t y = 0; y < height; y++) {
            int64_t top, bottom;
            float down;
            upsampled_at(y, coarse_height, &top, &bottom, &down);
            const float *pair_frames[2] = {frames + b * frame_strides[0], frames + (batch + b) * frame_strides[0]};
            const float *row = prediction + b * prediction_strides[0] + ((y + 1) >> 1) * prediction_strides[2] +
                               2 * ((y + 1) & 1) * prediction_strides[1];
            for (int64_t x = 0; x < width; x++) {
                int64_t left, right;
                float across;
                upsampled_at(x, coarse_width, &left, &right, &across);
                float coarse_flow[2][2]; /* direction (t->0, t->1), component (x, y) */
                for (int d = 0; d < 2; d++) {
                    for (int axis = 0; axis < 2; axis++) {
                        const float *plane = coarse + d * coarse_strides[0] + b * coarse_strides[1] +
                                             axis * coarse_strides[2];
                        const float *upper = plane + top * coarse_strides[3];
                        const float *lower = plane + bottom * coarse_strides[3];
                        const int64_t at_left = left * coarse_strides[4], at_right = right * coarse_strides[4];
                        float above = (1.0f - across) * upper[at_left] + across * upper[at_right];
                        float below = (1.0f - across) * lower[at_left] + across * lower[at_right];
                        coarse_flow[d][axis] = 2.0f * ((1.0f - down) * above + down * below);
                    }
                }
                const float *here =
                    row + ((x + 1) >> 1) * prediction_strides[3] + ((x + 1) & 1) * prediction_strides[1];
                float total[3] = {0.0f, 0.0f, 0.0f};
                for (int64_t k = 0; k < fields; k++) {
                    float warped[2][3];
                    for (int d = 0; d < 2; d++) {
                        const float *correction = here + (2 * fields * d + 2 * k) * channel;
                        float sample_x = clamp_position((float)x + correction[0] + coarse_flow[d][0], last_x);
                        float sample_y = clamp_position((float)y + correction[channel] + coarse_flow[d][1], last_y);
                        Bilinear s = bilinear_at(sample_x, sample_y, width, height, frame_strides[2], frame_strides[3]);
                        for (int c = 0; c < 3; c++)
                            warped[d][c] = bilinear_value(&s, pair_frames[d] + s.offset + c * frame_strides[1]);
                    }
                    float mask = here[(4 * fields + k) * channel];
                    const float *residual = here + (5 * fields + 3 * k) * channel;
                    float *out = candidates + b * candidate_strides[0] + k * candidate_strides[1] +
                                 y * candidate_strides[3] + x * candidate_strides[4];
                    for (int c = 0; c < 3; c++) {
                        float value =
                            warped[1][c] + mask * (warped[0][c] - warped[1][c]) + residual[c * channel] + mean[b];
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

/* Where a 7 x 7 window around a centre lies on a level's map: its 8 x 8 integer positions start at
 * (first_x, first_y), and all 49 samples share the fractional parts (fx, fy). */
typedef struct {
    int64_t first_x, first_y;
    float fx, fy;
} Window;

static inline Window window_at(float centre_x, float centre_y, int64_t level, int64_t level_w, int64_t level_h) {
    const float far = 14.0f; /* two windows: beyond that every sample is zero */
    float scale = 1.0f / (float)(1 << level), x = centre_x * scale, y = centre_y * scale;
    /* Clamped far outside (NaN to the near side), so the integers stay in range. */
    x = x > -far ? (x < (float)level_w + far ? x : (float)level_w + far) : -far;
    y = y > -far ? (y < (float)level_h + far ? y : (float)level_h + far) : -far;
    int64_t x0 = (int64_t)floorf(x), y0 = (int64_t)floorf(y);
    Window w = {x0 - 3, y0 - 3, x - (float)x0, y - (float)y0};
    return w;
}

/* A source pixel's volume row is read at scattered places, one row per pixel: asking for the next
 * pixel's window while this one is computed keeps the memory busy instead of waiting on it. */
static inline void prefetch_window(const float *volume_row, Window w, int64_t level_w, int64_t level_h) {
    int64_t left = w.first_x < 0 ? 0 : w.first_x, right = w.first_x + 7 >= level_w ? level_w - 1 : w.first_x + 7;
    if (left > right) return;
    for (int64_t ty = w.first_y; ty < w.first_y + 8; ty++) {
        if (ty < 0 || ty >= level_h) continue;
        __builtin_prefetch(volume_row + ty * level_w + left);
        __builtin_prefetch(volume_row + ty * level_w + right);
    }
}

/* The 8 x 8 correlations of a window, zero outside the map: read from the source pixel's volume row
 * (target t at volume_row[t * target_stride]: 1 in a row, or the pixel count when the volume is the other
 * direction's, read transposed), or (no volume) dot products of the source row with the pooled target rows. */
static inline void window_values(float values[8][8], Window w, const float *volume_row, int64_t target_stride,
                                 const float *target_rows, const float *source, int64_t dim, int64_t level_w,
                                 int64_t level_h) {
    const int inside = w.first_x >= 0 && w.first_y >= 0 && w.first_x + 8 <= level_w && w.first_y + 8 <= level_h;
    for (int64_t j = 0; j < 8; j++) {
        int64_t ty = w.first_y + j;
        for (int64_t i = 0; i < 8; i++) {
            int64_t tx = w.first_x + i;
            values[j][i] = 0.0f;
            if (!inside && (ty < 0 || ty >= level_h || tx < 0 || tx >= level_w)) continue;
            if (volume_row != 0) {
                values[j][i] = volume_row[(ty * level_w + tx) * target_stride];
            } else {
                const float *row = target_rows + (ty * level_w + tx) * dim;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int64_t k = 0; k < dim; k++) dot += source[k] * row[k];
                values[j][i] = dot;
            }
        }
    }
}

/* The correlation lookup of WindowCorrelation (correlation.py): for direction d, query q (of sample
 * q % batch) and source pixel p, the correlations around centre (x, y) on every level, sampled bilinearly
 * with zeros outside the level's map, on 7 x 7 offsets (x offset slow): out channel d*196 + L*49 + 7a + b.
 * centres: 2 x queries x 2 x pixels (x first, level-0 pixels); sizes: levels x (height, width);
 * tables[2L + d], by modes[2L + d]: VOLUME, a volume (batch x pixels x h_L*w_L, already scaled);
 * TRANSPOSED (level 0 only), the other direction's level-0 volume, read as its transpose; ON_DEMAND, the
 * pooled target features (batch x h_L*w_L x dim rows) that the scaled source rows (2 x batch x pixels x
 * dim) are dotted with; out: queries x (2 * levels * 49) x height x width. */
enum { ON_DEMAND = 0, VOLUME = 1, TRANSPOSED = 2 };

void amt_correlation(const float *centres, int64_t queries, int64_t batch, int64_t height, int64_t width,
                     int64_t levels, const int64_t *sizes, const float *const *tables, const int32_t *modes,
                     const float *sources, int64_t dim, float *out, const int64_t *out_strides, int threads) {
    const int64_t pixels = height * width, channel_stride = out_strides[1];
#pragma omp parallel for collapse(3) num_threads(threads) schedule(static)
    for (int64_t d = 0; d < 2; d++) {
        for (int64_t q = 0; q < queries; q++) {
            for (int64_t y = 0; y < height; y++) {
                const int64_t b = q % batch;
                const float *centre_x = centres + (d * queries + q) * 2 * pixels, *centre_y = centre_x + pixels;
                for (int64_t x = 0; x < width; x++) {
                    const int64_t p = y * width + x;
                    const float *source = sources + ((d * batch + b) * pixels + p) * dim;
                    float *o = out + q * out_strides[0] + y * out_strides[2] + x * out_strides[3] +
                               d * levels * 49 * channel_stride;
                    for (int64_t level = 0; level < levels; level++) {
                        const int64_t level_h = sizes[2 * level], level_w = sizes[2 * level + 1];
                        const int64_t area = level_h * level_w;
                        const float *table = tables[2 * level + d];
                        const int32_t mode = modes[2 * level + d];
                        /* Transposed, neighbouring pixels read neighbouring columns: the caches serve them. */
                        const float *volume_row = mode == VOLUME       ? table + (b * pixels + p) * area
                                                  : mode == TRANSPOSED ? table + b * pixels * pixels + p
                                                                       : 0;
                        if (mode == VOLUME && x + 1 < width)
                            prefetch_window(volume_row + area,
                                            window_at(centre_x[p + 1], centre_y[p + 1], level, level_w, level_h),
                                            level_w, level_h);
                        Window w = window_at(centre_x[p], centre_y[p], level, level_w, level_h);
                        float values[8][8], along_x[8][7], window[49];
                        window_values(values, w, volume_row, mode == TRANSPOSED ? pixels : 1, table + b * area * dim,
                                      source, dim, level_w, level_h);
                        for (int j = 0; j < 8; j++)
                            for (int a = 0; a < 7; a++)
                                along_x[j][a] = (1.0f - w.fx) * values[j][a] + w.fx * values[j][a + 1];
                        for (int a = 0; a < 7; a++)
                            for (int c = 0; c < 7; c++)
                                window[7 * a + c] = (1.0f - w.fy) * along_x[c][a] + w.fy * along_x[c + 1][a];
                        float *channel = o + level * 49 * channel_stride;
                        for (int k = 0; k < 49; k++) channel[k * channel_stride] = window[k];
                    }
                }
            }
        }
    }
}
/* 16 floats in GCC's generic vectors, which compile to AVX-512, AVX2 or NEON as the CPU has. */
typedef float Vector __attribute__((vector_size(64)));
typedef int32_t Mask __attribute__((vector_size(64)));
enum { LANES = 16 };

static inline Vector load_vector(const float *p) {
    Vector v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

static inline void store_vector(float *p, Vector v) { __builtin_memcpy(p, &v, sizeof v); }

static inline Vector select_vector(Mask mask, Vector yes, Vector no) {
    return (Vector)((mask & (Mask)yes) | (~mask & (Mask)no));
}

/* comb_block (a K x K convolution C -> M, PReLU, a K x K convolution M -> 3, zero padding) added to the
 * average of the candidates and clamped to [0, 1], a band of rows per thread. Its hidden layer never
 * leaves the caches: K rows of it are kept, each computed once from K padded rows of the input, and vector
 * loops run along the rows, 2 vectors of pixels at a time. */
enum { STEP = 2 * LANES, GROUP = 6 /* hidden channels per pass: 12 accumulators */ };

/* Rows kept in slots (row r in slot r mod K), each `planes` planes of `length` floats with zero margins. */
typedef struct {
    float *data;
    int64_t *held; /* the row each slot holds */
    int64_t kernel, planes, length;
} RowRing;

/* Row r's slot (r >= -kernel: rows above the image have negative numbers); *held says whether it holds
 * that row already, and it is marked as holding it from now on. */
static inline float *ring_slot(RowRing *ring, int64_t row, int *held) {
    const int64_t slot = (row + ring->kernel) % ring->kernel;
    *held = ring->held[slot] == row;
    ring->held[slot] = row;
    return ring->data + slot * ring->planes * ring->length;
}

/* Input row r of image b, zero-padded (margin `radius` on the left, zeros past the width). */
static const float *comb_input(RowRing *ring, int64_t row, const float *image, const int64_t *strides,
                               int64_t height, int64_t width, int64_t radius) {
    int held;
    float *slot = ring_slot(ring, row, &held);
    if (held) return slot;
    for (int64_t c = 0; c < ring->planes; c++) {
        float *plane = slot + c * ring->length + radius;
        if (row < 0 || row >= height) {
            for (int64_t x = 0; x < width; x++) plane[x] = 0.0f;
            continue;
        }
        const float *source = image + c * strides[1] + row * strides[2];
        for (int64_t x = 0; x < width; x++) plane[x] = source[x * strides[3]];
    }
    return slot;
}

static const float *comb_hidden(RowRing *hidden, RowRing *input, int64_t row, const float *image,
                                const int64_t *strides, int64_t height, int64_t width, const float *weight,
                                const float *bias, const float *slopes) {
    const int64_t kernel = hidden->kernel, radius = kernel / 2, area = kernel * kernel;
    const int64_t channels = input->planes, length = hidden->length;
    int held;
    float *slot = ring_slot(hidden, row, &held);
    if (held) return slot;
    if (row < 0 || row >= height) { /* the second convolution's zero padding */
        for (int64_t i = 0; i < hidden->planes * length; i++) slot[i] = 0.0f;
        return slot;
    }
    const float *rows[kernel];
    for (int64_t ky = 0; ky < kernel; ky++)
        rows[ky] = comb_input(input, row + ky - radius, image, strides, height, width, radius);
    for (int64_t x = 0; x < width; x += STEP) {
        for (int64_t g = 0; g < hidden->planes; g += GROUP) {
            Vector sum[GROUP][2];
            for (int i = 0; i < GROUP; i++) sum[i][0] = sum[i][1] = (Vector){} + bias[g + i];
            for (int64_t c = 0; c < channels; c++) {
                for (int64_t ky = 0; ky < kernel; ky++) {
                    const float *p = rows[ky] + c * length + x;
                    const float *w = weight + (g * channels + c) * area + ky * kernel;
                    for (int64_t kx = 0; kx < kernel; kx++) {
                        Vector a = load_vector(p + kx), b = load_vector(p + kx + LANES);
                        for (int i = 0; i < GROUP; i++) {
                            float k = w[i * channels * area + kx];
                            sum[i][0] += k * a;
                            sum[i][1] += k * b;
                        }
                    }
                }
            }
            for (int i = 0; i < GROUP; i++) {
                float *out = slot + (g + i) * length + radius + x;
                for (int half = 0; half < 2; half++) {
                    Vector v = sum[i][half];
                    v = select_vector(v > 0.0f, v, v * slopes[g + i]);
                    store_vector(out + half * LANES, v);
                }
            }
        }
    }
    for (int64_t c = 0; c < hidden->planes; c++) /* past the width: zeros again for the second convolution */
        for (int64_t x = radius + width; x < length; x++) slot[c * length + x] = 0.0f;
    return slot;
}

/* out = clamp(average + comb_block(candidates), 0, 1) for B x C x H x W candidates (any strides), B x 3 x H x W
 * average and out (rows contiguous); weights as PyTorch stores them (M x C x K x K, 3 x M x K x K), M a
 * multiple of GROUP. Returns 0, or 1 when a thread could not allocate its rows (out left incomplete). */
int amt_comb(const float *candidates, const int64_t *candidate_strides, const float *average,
              const int64_t *average_strides, int64_t batch, int64_t channels, int64_t hidden, int64_t kernel,
              int64_t height, int64_t width, const float *weight1, const float *bias1, const float *slopes,
              const float *weight2, const float *bias2, float *out, const int64_t *out_strides, int threads) {
    const int64_t radius = kernel / 2, area = kernel * kernel;
    const int64_t length = (width + STEP - 1) / STEP * STEP + 2 * radius;
    const int64_t bands = threads > 1 ? threads : 1;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        float *memory = calloc((size_t)(kernel * (channels + hidden) * length), sizeof(float));
        int64_t *held = malloc((size_t)(2 * kernel) * sizeof(int64_t));
        RowRing input = {memory, held, kernel, channels, length};
        RowRing hidden_rows = {memory + kernel * channels * length, held + kernel, kernel, hidden, length};
#pragma omp for collapse(2) schedule(static)
        for (int64_t b = 0; b < batch; b++) {
            for (int64_t band = 0; band < bands; band++) {
                if (memory == 0 || held == 0) {
#pragma omp atomic write
                    failed = 1;
                    continue;
                }
                for (int64_t i = 0; i < 2 * kernel; i++) held[i] = INT64_MIN;
                const float *image = candidates + b * candidate_strides[0];
                const int64_t first = height * band / bands, last = height * (band + 1) / bands;
                for (int64_t y = first; y < last; y++) {
                    const float *rows[kernel];
                    for (int64_t ky = 0; ky < kernel; ky++)
                        rows[ky] = comb_hidden(&hidden_rows, &input, y + ky - radius, image, candidate_strides,
                                               height, width, weight1, bias1, slopes);
                    for (int64_t x = 0; x < width; x += STEP) {
                        Vector sum[3][2];
                        for (int o = 0; o < 3; o++) sum[o][0] = sum[o][1] = (Vector){} + bias2[o];
                        for (int64_t c = 0; c < hidden; c++) {
                            for (int64_t ky = 0; ky < kernel; ky++) {
                                const float *p = rows[ky] + c * length + x;
                                const float *w = weight2 + c * area + ky * kernel;
                                for (int64_t kx = 0; kx < kernel; kx++) {
                                    Vector a = load_vector(p + kx), v = load_vector(p + kx + LANES);
                                    for (int o = 0; o < 3; o++) {
                                        float k = w[o * hidden * area + kx];
                                        sum[o][0] += k * a;
                                        sum[o][1] += k * v;
                                    }
                                }
                            }
                        }
                        const int64_t count = width - x < STEP ? width - x : STEP;
                        for (int o = 0; o < 3; o++) {
                            float values[STEP];
                            __builtin_memcpy(values, sum[o], sizeof values);
                            const float *mean = average + b * average_strides[0] + o * average_strides[1] +
                                                y * average_strides[2] + x;
                            float *target = out + b * out_strides[0] + o * out_strides[1] + y * out_strides[2] + x;
                            for (int64_t i = 0; i < count; i++) {
                                float value = mean[i] + values[i];
                                value = value < 0.0f ? 0.0f : value;
                                target[i] = value > 1.0f ? 1.0f : value;
                            }
                        }
                    }
                }
            }
        }
        free(memory);
        free(held);
    }
    return failed;
}

/* Convolutions (stride 1, padding 1, bias) by Winograd's minimal filtering: a 3 x 3 kernel by F(4x4, 3x3),
 * every 4 x 4 block of outputs ("tile") from a 6 x 6 input patch in 36 products per input-output channel
 * pair instead of 144; a 2 x 2 kernel (decoder1's phases) by F(3x3, 2x2), 3 x 3 outputs from 4 x 4 inputs
 * in 16 products instead of 36. The transforms are a few additions and multiplications by small powers
 * of 2. Tiles are taken a block at a time, sized so that their transformed inputs V and products M stay
 * in the caches: per position, M = V x U, a matrix product whose inner loop is 6 tiles x 4 vectors of
 * output channels. */
enum { WINOGRAD_BLOCK_BYTES = 640 << 10 };

/* B^T d for the values of a patch's column or row: 6 for a 3 x 3 kernel, 4 for a 2 x 2 one. */
static inline void winograd_input_1d(const int kernel, const Vector d[6], Vector t[6]) {
    if (kernel == 3) {
        t[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
        t[1] = d[3] + d[4] - 4.0f * (d[1] + d[2]);
        t[2] = d[4] - d[3] + 4.0f * (d[1] - d[2]);
        t[3] = d[4] - d[2] + 2.0f * (d[3] - d[1]);
        t[4] = d[4] - d[2] + 2.0f * (d[1] - d[3]);
        t[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
    } else {
        t[0] = d[0] - d[2];
        t[1] = d[1] + d[2];
        t[2] = d[2] - d[1];
        t[3] = d[1] - d[3];
    }
}

/* A^T m for the products of a column or row: 4 outputs of a 3 x 3 kernel, 3 of a 2 x 2 one. */
static inline void winograd_output_1d(const int kernel, const Vector m[6], Vector y[4]) {
    const Vector sum12 = m[1] + m[2], difference12 = m[1] - m[2];
    if (kernel == 3) {
        const Vector sum34 = m[3] + m[4], difference34 = m[3] - m[4];
        y[0] = m[0] + sum12 + sum34;
        y[1] = difference12 + 2.0f * difference34;
        y[2] = sum12 + 4.0f * sum34;
        y[3] = difference12 + 8.0f * difference34 + m[5];
    } else {
        y[0] = m[0] + sum12;
        y[1] = difference12;
        y[2] = sum12 + m[3];
    }
}

/* The first `count` (<= LANES) floats at p, zeros after them, and the converse store: in pieces of
 * 8, 4, 2 and 1 floats, fixed-size copies that compile to vector moves rather than calls to memcpy. */
static inline Vector load_partial(const float *p, int64_t count) {
    if (count == LANES) return load_vector(p);
    float lanes[LANES] = {0};
    for (int64_t piece = 8, done = 0; piece > 0; piece /= 2) {
        if (count & piece) {
            __builtin_memcpy(lanes + done, p + done, (size_t)piece * sizeof(float));
            done += piece;
        }
    }
    return load_vector(lanes);
}

static inline void store_partial(float *p, Vector v, int64_t count) {
    if (count == LANES) {
        store_vector(p, v);
        return;
    }
    float lanes[LANES];
    __builtin_memcpy(lanes, &v, sizeof v);
    for (int64_t piece = 8, done = 0; piece > 0; piece /= 2) {
        if (count & piece) {
            __builtin_memcpy(p + done, lanes + done, (size_t)piece * sizeof(float));
            done += piece;
        }
    }
}

/* m (6 tiles x 16*VECTORS channels) = v (6 tiles x k) x u (k x 16*VECTORS) for one of the 16 positions. */
static inline __attribute__((always_inline)) void winograd_product(const float *v, int64_t v_stride, const float *u,
                                                                   int64_t u_stride, int64_t k, float *m,
                                                                   int64_t m_stride, const int vectors) {
    Vector sum[6][4] = {};
    for (int64_t c = 0; c < k; c++) {
        Vector w[4];
        for (int j = 0; j < vectors; j++) w[j] = load_vector(u + c * u_stride + j * LANES);
        for (int i = 0; i < 6; i++) {
            const float a = v[i * v_stride + c];
            for (int j = 0; j < vectors; j++) sum[i][j] += a * w[j];
        }
    }
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < vectors; j++) store_vector(m + i * m_stride + j * LANES, sum[i][j]);
}

/* One block of tiles of `amt_winograd`, for a kernel size known when compiled (so the transforms'
 * loops unroll). */
static inline __attribute__((always_inline)) void winograd_block(
    const int kernel, const float *x, const float *end, int64_t height, int64_t width, int64_t in_channels,
    int64_t padded_in, int64_t out_height, int64_t out_width, int64_t out_channels, int64_t padded_out,
    const float *transformed, const float *bias, float *out, int64_t first, int64_t count, int64_t block_tiles,
    float *inputs, float *products) {
    const int tile = kernel == 3 ? 4 : 3, patch = tile + kernel - 1, positions = patch * patch;
    const int64_t tiles_y = (out_height + tile - 1) / tile, tiles_x = (out_width + tile - 1) / tile;
    for (int64_t i = 0; i < count; i++) { /* V = B^T d B, 16 channels at a time */
        const int64_t t = first + i, b = t / (tiles_y * tiles_x);
        const int64_t top = tile * (t / tiles_x % tiles_y) - 1, left = tile * (t % tiles_x) - 1;
        for (int64_t c = 0; c < in_channels; c += LANES) {
            const int64_t n = in_channels - c < LANES ? in_channels - c : LANES;
            Vector d[6][6], v[6];
            for (int s = 0; s < patch; s++) {
                Vector column[6], rows[6];
                for (int r = 0; r < patch; r++) {
                    const int64_t y = top + r, x0 = left + s;
                    const float *p = x + ((b * height + y) * width + x0) * in_channels + c;
                    /* Lanes past the channels (the next pixel's) are never read by the product. */
                    column[r] = !(y >= 0 && y < height && x0 >= 0 && x0 < width) ? (Vector){}
                                : p + LANES <= end                                 ? load_vector(p)
                                                                                   : load_partial(p, n);
                }
                winograd_input_1d(kernel, column, rows);
                for (int r = 0; r < patch; r++) d[r][s] = rows[r];
            }
            for (int r = 0; r < patch; r++) {
                winograd_input_1d(kernel, d[r], v);
                for (int s = 0; s < patch; s++)
                    store_vector(inputs + ((r * patch + s) * block_tiles + i) * padded_in + c, v[s]);
            }
        }
    }
    for (int64_t position = 0; position < positions; position++) { /* M = V U */
        const float *v = inputs + position * block_tiles * padded_in;
        const float *u = transformed + position * in_channels * padded_out;
        float *m = products + position * block_tiles * padded_out;
        for (int64_t t0 = 0; t0 < count; t0 += 6) {
            for (int64_t o = 0; o < padded_out; o += 4 * LANES) {
                const int64_t left = (padded_out - o) / LANES;
                const float *vt = v + t0 * padded_in, *uo = u + o;
                float *mt = m + t0 * padded_out + o;
                if (left >= 4) winograd_product(vt, padded_in, uo, padded_out, in_channels, mt, padded_out, 4);
                else if (left == 3) winograd_product(vt, padded_in, uo, padded_out, in_channels, mt, padded_out, 3);
                else if (left == 2) winograd_product(vt, padded_in, uo, padded_out, in_channels, mt, padded_out, 2);
                else winograd_product(vt, padded_in, uo, padded_out, in_channels, mt, padded_out, 1);
            }
        }
    }
    for (int64_t i = 0; i < count; i++) { /* Y = A^T M A + bias */
        const int64_t t = first + i, b = t / (tiles_y * tiles_x);
        const int64_t top = tile * (t / tiles_x % tiles_y), left = tile * (t % tiles_x);
        for (int64_t o = 0; o < out_channels; o += LANES) {
            const int64_t n = out_channels - o < LANES ? out_channels - o : LANES;
            Vector r[4][6];
            for (int s = 0; s < patch; s++) {
                Vector column[6], y[4];
                for (int q = 0; q < patch; q++)
                    column[q] = load_vector(products + ((q * patch + s) * block_tiles + i) * padded_out + o);
                winograd_output_1d(kernel, column, y);
                for (int a = 0; a < tile; a++) r[a][s] = y[a];
            }
            const Vector shift = load_vector(bias + o);
            for (int a = 0; a < tile && top + a < out_height; a++) {
                Vector y[4];
                winograd_output_1d(kernel, r[a], y);
                for (int e = 0; e < tile && left + e < out_width; e++)
                    store_partial(out + ((b * out_height + top + a) * out_width + left + e) * out_channels + o,
                                  y[e] + shift, n);
            }
        }
    }
}

/* out = conv(x) + bias with a `kernel` x `kernel` kernel (3 or 2), stride 1 and padding 1, for channels-last
 * B x H x W x C_in input and B x H' x W' x C_out output (H' = H + 3 - kernel); transformed: P^2 x C_in x
 * C_out_padded (G w G^T per channel pair, P = 6 or 4 positions a side, row-major), C_out_padded a multiple of
 * 16; bias: C_out_padded values. Returns 1 when out of memory (out untouched), else 0. */
int amt_winograd(const float *x, int64_t batch, int64_t in_channels, int64_t height, int64_t width, int64_t kernel,
                 const float *transformed, const float *bias, int64_t out_channels, int64_t padded_out, float *out,
                 int threads) {
    const int64_t tile = kernel == 3 ? 4 : 3, positions = (tile + kernel - 1) * (tile + kernel - 1);
    const int64_t out_height = height + 3 - kernel, out_width = width + 3 - kernel;
    const int64_t tiles = batch * ((out_height + tile - 1) / tile) * ((out_width + tile - 1) / tile);
    const int64_t padded_in = (in_channels + LANES - 1) / LANES * LANES;
    const float *end = x + batch * height * width * in_channels;
    int64_t block_tiles = WINOGRAD_BLOCK_BYTES / (positions * (padded_in + padded_out) * 4) / 6 * 6;
    block_tiles = block_tiles < 6 ? 6 : block_tiles > 48 ? 48 : block_tiles;
    const int64_t blocks = (tiles + block_tiles - 1) / block_tiles;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        float *inputs = calloc((size_t)(positions * block_tiles * padded_in), sizeof(float));
        float *products = calloc((size_t)(positions * block_tiles * padded_out), sizeof(float));
        if (inputs == 0 || products == 0) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t block = 0; block < blocks; block++) {
            if (failed) continue;
            const int64_t first = block * block_tiles;
            const int64_t count = tiles - first < block_tiles ? tiles - first : block_tiles;
            if (kernel == 3)
                winograd_block(3, x, end, height, width, in_channels, padded_in, out_height, out_width, out_channels,
                               padded_out, transformed, bias, out, first, count, block_tiles, inputs, products);
            else
                winograd_block(2, x, end, height, width, in_channels, padded_in, out_height, out_width, out_channels,
                               padded_out, transformed, bias, out, first, count, block_tiles, inputs, products);
        }
        free(inputs);
        free(products);
    }
    return failed;
}
