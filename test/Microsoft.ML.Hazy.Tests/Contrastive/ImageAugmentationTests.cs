using Microsoft.ML.Hazy.Contrastive;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Contrastive;

public sealed class ImageAugmentationTests
{
    private const int C = 2, H = 6, W = 5;

    private static Tensor Images(int b = 4)
    {
        var rand = new Random(3);
        return tensor(Enumerable.Range(0, b * C * H * W).Select(_ => (float)rand.NextDouble()).ToArray(), new long[] { b, C * H * W });
    }

    private static float[] View(ImageAugmentation a, Tensor x, ulong seed)
    {
        using var g = new Generator(seed);
        using var v = a.View(x, C, H, W, g);
        Assert.That(v.shape, Is.EqualTo(x.shape));
        return v.data<float>().ToArray();
    }

    [Test]
    public void SameSeedSameViewsOtherSeedOtherViews()
    {
        using var x = Images();
        var a = new ImageAugmentation();
        var first = View(a, x, 5);
        Assert.That(View(a, x, 5), Is.EqualTo(first));
        var other = View(a, x, 6);
        Assert.That(other.Zip(first, (p, q) => Math.Abs(p - q)).Max(), Is.GreaterThan(1e-3));
    }

    private static ImageAugmentation WholeImage(double flip, double jitter) => new()
    {
        MinimumCropScale = 1, MinimumAspectRatio = 1, MaximumAspectRatio = 1, HorizontalFlipProbability = flip, JitterProbability = jitter,
    };

    [Test]
    public void WholeImageWithoutFlipOrJitterIsTheImage()
    {
        using var x = Images();
        // Bilinear sampling at the pixel centres of the identity grid returns the pixels (float rounding of the grid only).
        Assert.That(View(WholeImage(0, 0), x, 1), Is.EqualTo(x.data<float>().ToArray()).Within(1e-5));
    }

    [Test]
    public void FlipAlwaysWithWholeImageIsTheMirrorImage()
    {
        using var x = Images(3);
        var p = x.data<float>().ToArray();
        var f = View(WholeImage(1, 0), x, 9);
        for (int b = 0; b < 3; b++)
        {
            for (int c = 0; c < C; c++)
            {
                for (int h = 0; h < H; h++)
                {
                    for (int w = 0; w < W; w++)
                    {
                        int i = ((b * C + c) * H + h) * W + w, j = ((b * C + c) * H + h) * W + (W - 1 - w);
                        Assert.That(f[i], Is.EqualTo(p[j]).Within(1e-5), $"image {b} channel {c} pixel ({h}, {w})");
                    }
                }
            }
        }
    }

    [Test]
    public void JitterOnlyKeepsTheContrastNormalisedImage()
    {
        // The whole image, jittered always: the view's deviations from its mean are the image's times brightness·contrast,
        // and its mean is the image's times brightness.
        using var x = Images(3);
        var p = x.data<float>().ToArray();
        var q = View(WholeImage(0, 1), x, 4);
        int n = C * H * W;
        for (int b = 0; b < 3; b++)
        {
            var pb = p.Skip(b * n).Take(n).Select(v => (double)v).ToArray();
            var qb = q.Skip(b * n).Take(n).Select(v => (double)v).ToArray();
            double pm = pb.Average(), qm = qb.Average();
            double ratio = (qb[0] - qm) / (pb[0] - pm);
            Assert.That(ratio, Is.InRange(0.6 * 0.6 - 1e-6, 1.4 * 1.4 + 1e-6));
            for (int i = 1; i < n; i++)
                Assert.That(qb[i] - qm, Is.EqualTo(ratio * (pb[i] - pm)).Within(1e-4), $"image {b} value {i}");
            Assert.That(qm / pm, Is.InRange(0.6 - 1e-6, 1.4 + 1e-6), "the brightness factor");
        }
    }

    [Test]
    public void BadSettingsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageAugmentation { MinimumCropScale = 0 }.Check());
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageAugmentation { HorizontalFlipProbability = 1.5 }.Check());
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageAugmentation { Brightness = 1 }.Check());
    }
}
