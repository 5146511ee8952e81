using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.Tests.Cnn;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Tests.Mlp;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>
/// Training and every attribution method (the gradient methods, occlusion and KernelSHAP) while another thread allocates, leaves tensors and scalars to their
/// finalizers and collects in a loop: a native object freed by a finalizer while libtorch reads it, or memory read
/// before it is written, would change the numbers; they must equal a quiet run's bit for bit.
/// </summary>
[NonParallelizable]
public sealed class GcStressTests
{
    private const int Size = BlobImages.Channels * BlobImages.Height * BlobImages.Width;

    private static List<float[]> Run()
    {
        var results = new List<float[]>();
        var ml = new MLContext(2);
        var mlpOptions = Blobs.SmallOptions();
        mlpOptions.DropoutRate = 0.2;
        mlpOptions.Seed = 5;
        var blobs = Blobs.Keyed(ml, Blobs.Make(120, 1));
        using (var mlp = ml.MulticlassClassification.Trainers.HazyMlp(mlpOptions).Fit(blobs))
            results.AddRange(ConformanceHelpers.ReadScores(mlp.Transform(blobs)));

        var cnnOptions = BlobImages.SmallOptions();
        cnnOptions.Seed = 6;
        var rows = BlobImages.Make(60, 3);
        var images = BlobImages.Keyed(ml, rows);
        using var cnn = ml.MulticlassClassification.Trainers.HazyCnn(cnnOptions).Fit(images);
        results.AddRange(ConformanceHelpers.ReadScores(cnn.Transform(images)));

        var x = rows.Take(12).SelectMany(r => r.Features).ToArray();
        var targets = Enumerable.Range(0, 12).Select(i => i % 3).ToArray();
        var baselines = rows.Skip(40).Take(4).Select(r => r.Features).ToArray();
        foreach (var method in Enum.GetValues<GradientMethod>())
        {
            var options = new GradientAttributionOptions { Method = method, SmoothGradSamples = 6, Steps = 8, BatchSize = 5 };
            var attribution = new GradientAttribution(cnn.Network, Size, options, method == GradientMethod.DeepLiftShap ? baselines : null, seed: 9);
            results.Add(attribution.Attribute(x, 12, targets));
        }
        var scores = new TorchScoreFunction(cnn.Network, Size);
        var occlusion = new OcclusionAttribution(scores, new OcclusionAttribution.Options
        {
            Shape = [BlobImages.Channels, BlobImages.Height, BlobImages.Width],
            WindowShape = [1, 2, 2],
            Strides = [1, 2, 2],
        });
        results.Add(occlusion.Attribute(x, 12, targets));
        var shap = new KernelShapAttribution(scores, new KernelShapAttribution.Options
        {
            NumberOfEvaluations = 128,
            Seed = 4,
            // 2 × 2 superpixels per channel: 24 groups.
            FeatureGroups = Enumerable.Range(0, Size).Select(k =>
                k / (BlobImages.Height * BlobImages.Width) * 12 + k % (BlobImages.Height * BlobImages.Width) / BlobImages.Width / 2 * 4 + k % BlobImages.Width / 2).ToArray(),
        });
        results.Add(shap.Attribute(x, 12, targets));
        return results;
    }

    [Test]
    public void TrainingAndAttributionUnderGarbageCollectionEqualAQuietRun()
    {
        var quiet = Run();
        using var stop = new CancellationTokenSource();
        var collector = new Thread(() =>
        {
            var rand = new Random(1);
            while (!stop.IsCancellationRequested)
            {
                _ = new byte[rand.Next(1, 1 << 20)];
                // Left to their finalizers on purpose: the finalizer thread frees native memory while the test runs.
                _ = ones(64).mul(2.0);
                _ = 3.0.ToScalar();
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }) { IsBackground = true };
        collector.Start();
        List<float[]> stressed;
        try
        {
            stressed = Run();
        }
        finally
        {
            stop.Cancel();
            collector.Join();
        }
        Assert.That(stressed, Has.Count.EqualTo(quiet.Count));
        for (int i = 0; i < quiet.Count; i++)
            Assert.That(stressed[i], Is.EqualTo(quiet[i]), $"result {i}");
    }
}
