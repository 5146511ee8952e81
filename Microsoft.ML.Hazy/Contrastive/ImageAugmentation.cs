using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Contrastive;

/// <summary>
/// Random views of image-shaped feature vectors (C·H·W values, channel after channel, each row by row), drawn per image and
/// applied to a whole batch at once on the training device: a random resized crop, a horizontal flip and a brightness and
/// contrast jitter, as the reference's CIFAR transforms (without the hue/saturation jitter and grayscale, which need colour).
/// </summary>
/// <remarks>
/// The crop covers a fraction of the image's area drawn uniformly from [<see cref="MinimumCropScale"/>,
/// <see cref="MaximumCropScale"/>] with an aspect ratio whose logarithm is uniform in [log <see cref="MinimumAspectRatio"/>, log <see cref="MaximumAspectRatio"/>] (¾ and 4⁄3), at a uniform position,
/// resampled bilinearly to H×W. Jitter, applied with <see cref="JitterProbability"/>, multiplies by a brightness factor
/// from [1 − <see cref="Brightness"/>, 1 + <see cref="Brightness"/>], then scales each image's deviations from its mean by a
/// contrast factor from [1 − <see cref="Contrast"/>, 1 + <see cref="Contrast"/>]. Values are not clamped. Every random draw
/// comes from the training run's generator, so the views are the same for the same seed.
/// </remarks>
public sealed class ImageAugmentation
{
    /// <summary>The smallest fraction of the image's area a crop covers: 0.2.</summary>
    public double MinimumCropScale { get; set; } = 0.2;

    /// <summary>The largest fraction of the image's area a crop covers: 1.</summary>
    public double MaximumCropScale { get; set; } = 1.0;

    /// <summary>The smallest aspect ratio (width over height) of a crop: ¾.</summary>
    public double MinimumAspectRatio { get; set; } = 3.0 / 4.0;

    /// <summary>The largest aspect ratio of a crop: 4⁄3.</summary>
    public double MaximumAspectRatio { get; set; } = 4.0 / 3.0;

    /// <summary>The probability of a horizontal flip: 0.5.</summary>
    public double HorizontalFlipProbability { get; set; } = 0.5;

    /// <summary>The brightness jitter's half-width: 0.4.</summary>
    public double Brightness { get; set; } = 0.4;

    /// <summary>The contrast jitter's half-width: 0.4.</summary>
    public double Contrast { get; set; } = 0.4;

    /// <summary>The probability that an image is jittered: 0.8.</summary>
    public double JitterProbability { get; set; } = 0.8;

    /// <summary>Checks the settings; throws naming the one out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public void Check()
    {
        if (!(MinimumCropScale > 0 && MinimumCropScale <= MaximumCropScale && MaximumCropScale <= 1))
            throw new ArgumentOutOfRangeException(nameof(MinimumCropScale), $"Expected 0 < MinimumCropScale ({MinimumCropScale}) ≤ MaximumCropScale ({MaximumCropScale}) ≤ 1.");
        if (!(MinimumAspectRatio > 0 && MinimumAspectRatio <= MaximumAspectRatio && double.IsFinite(MaximumAspectRatio)))
            throw new ArgumentOutOfRangeException(nameof(MinimumAspectRatio), $"Expected 0 < MinimumAspectRatio ({MinimumAspectRatio}) ≤ MaximumAspectRatio ({MaximumAspectRatio}).");
        Probability(HorizontalFlipProbability, nameof(HorizontalFlipProbability));
        Probability(JitterProbability, nameof(JitterProbability));
        if (!(Brightness >= 0 && Brightness < 1))
            throw new ArgumentOutOfRangeException(nameof(Brightness), Brightness, "must lie in [0, 1)");
        if (!(Contrast >= 0 && Contrast < 1))
            throw new ArgumentOutOfRangeException(nameof(Contrast), Contrast, "must lie in [0, 1)");
    }

    private static void Probability(double p, string name)
    {
        if (!(p >= 0 && p <= 1))
            throw new ArgumentOutOfRangeException(name, p, "must be a probability in [0, 1]");
    }

    /// <summary>
    /// One random view of each row of <paramref name="images"/> ([B, C·H·W] on any device); the draws come from
    /// <paramref name="generator"/> (a CPU generator) and only [B]-sized tensors of them travel to the device.
    /// </summary>
    internal Tensor View(Tensor images, int channels, int height, int width, Generator? generator)
    {
        using var scope = NewDisposeScope();
        long b = images.shape[0];
        var device = images.device;
        Tensor Uniform(double low, double high)
        {
            var u = rand(new long[] { b }, dtype: ScalarType.Float32, generator: generator);
            using var span = (high - low).ToScalar();
            using var lowScalar = low.ToScalar();
            using var unit = 1.ToScalar();
            return u.mul(span).add(lowScalar, unit);
        }

        var area = Uniform(MinimumCropScale, MaximumCropScale);
        var logRatio = Uniform(Math.Log(MinimumAspectRatio), Math.Log(MaximumAspectRatio));
        var ratio = logRatio.exp();
        using var one = 1.ToScalar();
        // Crop width and height as fractions of the image's sides; at most the whole side.
        var cropWidth = area.mul(ratio).sqrt().clamp_max(one);
        var cropHeight = area.div(ratio).sqrt().clamp_max(one);
        // Centres in the [-1, 1] coordinates of affine_grid, so the crop stays inside the image.
        using var two = 2.ToScalar();
        var centreX = Uniform(0, 1).mul(two).sub(one).mul(cropWidth.neg().add(one, one));
        var centreY = Uniform(0, 1).mul(two).sub(one).mul(cropHeight.neg().add(one, one));
        using var flipProbability = HorizontalFlipProbability.ToScalar();
        using var jitterProbability = JitterProbability.ToScalar();
        var flip = Uniform(0, 1).lt(flipProbability).to_type(ScalarType.Float32).mul(two).neg().add(one, one);
        var zero = zeros(b, dtype: ScalarType.Float32);
        var theta = stack(new[] { cropWidth.mul(flip), zero, centreX, zero, cropHeight, centreY }, 1).reshape(b, 2, 3);

        var brightness = Uniform(1 - Brightness, 1 + Brightness);
        var contrast = Uniform(1 - Contrast, 1 + Contrast);
        var jitter = Uniform(0, 1).lt(jitterProbability);
        brightness = where(jitter, brightness, ones_like(brightness));
        contrast = where(jitter, contrast, ones_like(contrast));

        var x = images.reshape(b, channels, height, width);
        var grid = nn.functional.affine_grid(theta.to(x.dtype).to(device), new long[] { b, channels, height, width }, align_corners: false);
        var cropped = nn.functional.grid_sample(x, grid, mode: GridSampleMode.Bilinear, padding_mode: GridSamplePaddingMode.Border, align_corners: false);
        var bright = cropped.mul(brightness.to(x.dtype).to(device).reshape(b, 1, 1, 1));
        var mean = bright.mean(new long[] { 1, 2, 3 }, keepdim: true);
        var jittered = bright.sub(mean).mul(contrast.to(x.dtype).to(device).reshape(b, 1, 1, 1)).add(mean, one);
        return jittered.reshape(b, -1).MoveToOuterDisposeScope();
    }
}
