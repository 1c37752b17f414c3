using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Rounding;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Tests.Support;

/// <summary>Plain double-precision references for the rounding statistics, written independently of the library code.</summary>
internal static class StatisticsReference
{
    /// <summary>Σ x xᵀ (K × K) and Σ x over every im2col patch of one group of a 2-D Conv, ONNX padding semantics, in double.</summary>
    /// <param name="dilationW">The horizontal dilation when it differs from <paramref name="dilation"/>.</param>
    public static (double[] H, double[] Sum, long Columns) ConvGram(float[] x, long[] shape, int group, int groups, int kh, int kw,
        int stride, int[] pads /* top, left, bottom, right */, int dilation, int? dilationW = null)
    {
        int dilationH = dilation, dilW = dilationW ?? dilation;
        int n = (int)shape[0], c = (int)shape[1], h = (int)shape[2], w = (int)shape[3];
        int cg = c / groups, k = cg * kh * kw;
        int outH = (h + pads[0] + pads[2] - dilationH * (kh - 1) - 1) / stride + 1;
        int outW = (w + pads[1] + pads[3] - dilW * (kw - 1) - 1) / stride + 1;
        var hm = new double[k * k];
        var sum = new double[k];
        var patch = new double[k];
        for (int b = 0; b < n; b++)
        {
            for (int oy = 0; oy < outH; oy++)
            {
                for (int ox = 0; ox < outW; ox++)
                {
                    int idx = 0;
                    for (int ch = 0; ch < cg; ch++)
                    {
                        for (int i = 0; i < kh; i++)
                        {
                            for (int j = 0; j < kw; j++)
                            {
                                int iy = oy * stride - pads[0] + i * dilationH, ix = ox * stride - pads[1] + j * dilW;
                                bool inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                                patch[idx++] = inside ? x[((b * c + group * cg + ch) * h + iy) * w + ix] : 0;
                            }
                        }
                    }
                    for (int i = 0; i < k; i++)
                    {
                        sum[i] += patch[i];
                        for (int j = 0; j < k; j++) { hm[i * k + j] += patch[i] * patch[j]; }
                    }
                }
            }
        }
        return (hm, sum, (long)n * outH * outW);
    }

    /// <summary>Σ x xᵀ over the rows of an M × K matrix, in double.</summary>
    public static double[] RowGram(float[] x, int k)
    {
        var hm = new double[k * k];
        for (int r = 0; r < x.Length / k; r++)
        {
            for (int i = 0; i < k; i++)
            {
                for (int j = 0; j < k; j++) { hm[i * k + j] += (double)x[r * k + i] * x[r * k + j]; }
            }
        }
        return hm;
    }

    /// <summary>‖a − b‖_F / ‖b‖_F.</summary>
    public static double RelativeError(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }

    /// <summary>Runs <paramref name="model"/> with <paramref name="tensor"/> exposed as an output and returns it with its shape.</summary>
    public static (float[] Values, long[] Shape) Capture(OnnxModel model, string tensor, float[] input, long[] shape)
    {
        OnnxModel probe = model.Clone();
        if (!probe.Graph.Output.Any(o => o.Name == tensor))
        {
            probe.Graph.Output.Add(new ValueInfoProto
            {
                Name = tensor,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
            });
        }
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, IntraOpNumThreads = 1 };
        using var session = new InferenceSession(probe.ToBytes(), options);
        using var value = OrtValue.CreateTensorValueFromMemory(input, shape);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, [model.InputName], [value], [tensor]);
        return (outputs[0].GetTensorDataAsSpan<float>().ToArray(), outputs[0].GetTensorTypeAndShape().Shape);
    }
}
