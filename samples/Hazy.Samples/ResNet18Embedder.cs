using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// ImageNet-pretrained ResNet18 features (512 values, the global average pool) from the two ONNX graphs of the
/// Microsoft.ML.DnnImageFeaturizer.ResNet18 package, run directly with ONNX Runtime: a grayscale 28 × 28 image becomes a
/// 224 × 224 three-channel image (bilinear upsampling, values 0-255), the package's preprocessing graph subtracts the
/// channel means, and ResNet18 embeds it. Like the CLIP image encoder of the Domino paper, the network never saw the
/// task's labels, so brightness, size and fine-class differences survive in its features.
/// </summary>
internal sealed class ResNet18Embedder : IDisposable
{
    public const int Dimensions = 512;
    private const int Side = 224;
    private readonly InferenceSession _prep;
    private readonly InferenceSession _net;

    public ResNet18Embedder()
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "DnnImageModels");
        var prepPath = Path.Combine(dir, "ResNetPrepOnnx", "ResNetPreprocess.onnx");
        var netPath = Path.Combine(dir, "ResNet18Onnx", "ResNet18.onnx");
        if (!File.Exists(prepPath) || !File.Exists(netPath))
            throw new FileNotFoundException($"The ResNet18 ONNX graphs of Microsoft.ML.DnnImageFeaturizer.ResNet18 are not beside the sample (looked in {dir}); rebuild the samples project.");
        var options = new SessionOptions { IntraOpNumThreads = Environment.ProcessorCount, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        _prep = new InferenceSession(prepPath, options);
        _net = new InferenceSession(netPath, options);
    }

    /// <summary>Embeds the given rows of a row-major <paramref name="side"/> × <paramref name="side"/> pixel array (values in [0, 1]).</summary>
    public float[] Embed(float[] pixels, int side, IReadOnlyList<int> rows, CancellationToken ct)
    {
        var result = new float[(long)rows.Count * Dimensions];
        var input = new DenseTensor<float>([1, 3, Side, Side]);
        string prepInput = _prep.InputMetadata.Keys.Single(), netInput = _net.InputMetadata.Keys.Single();
        var clock = Stopwatch.StartNew();
        AnsiConsole.Progress().AutoClear(true).Start(progress =>
        {
            var task = progress.AddTask($"ResNet18 features of {rows.Count:N0} images", maxValue: rows.Count);
            for (int i = 0; i < rows.Count; i++)
            {
                ct.ThrowIfCancellationRequested();
                Upsample(pixels.AsSpan(rows[i] * side * side, side * side), side, input.Buffer.Span);
                using var prepared = _prep.Run([NamedOnnxValue.CreateFromTensor(prepInput, input)]);
                var x = prepared.First().AsTensor<float>();
                using var features = _net.Run([NamedOnnxValue.CreateFromTensor(netInput, x)]);
                var f = features.First().AsEnumerable<float>().ToArray();
                if (f.Length != Dimensions)
                    throw new InvalidOperationException($"ResNet18 returned {f.Length} features; expected {Dimensions}.");
                f.CopyTo(result, (long)i * Dimensions);
                task.Increment(1);
            }
        });
        AnsiConsole.MarkupLine($"ResNet18 features of {rows.Count:N0} images in {clock.Elapsed.TotalSeconds:F0} s.");
        return result;
    }

    // Bilinear upsampling (pixel centres aligned) to 224 × 224, scaled to 0-255, copied to the three channels.
    private static void Upsample(ReadOnlySpan<float> image, int side, Span<float> target)
    {
        double scale = (double)side / Side;
        int plane = Side * Side;
        for (int y = 0; y < Side; y++)
        {
            double sy = Math.Clamp((y + 0.5) * scale - 0.5, 0, side - 1);
            int y0 = (int)sy, y1 = Math.Min(y0 + 1, side - 1);
            double fy = sy - y0;
            for (int x = 0; x < Side; x++)
            {
                double sx = Math.Clamp((x + 0.5) * scale - 0.5, 0, side - 1);
                int x0 = (int)sx, x1 = Math.Min(x0 + 1, side - 1);
                double fx = sx - x0;
                double v = (1 - fy) * ((1 - fx) * image[y0 * side + x0] + fx * image[y0 * side + x1])
                    + fy * ((1 - fx) * image[y1 * side + x0] + fx * image[y1 * side + x1]);
                float value = (float)(255 * v);
                int at = y * Side + x;
                target[at] = value;
                target[plane + at] = value;
                target[2 * plane + at] = value;
            }
        }
    }

    public void Dispose()
    {
        _prep.Dispose();
        _net.Dispose();
    }
}
