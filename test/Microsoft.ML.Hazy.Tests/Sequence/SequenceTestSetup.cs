using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>
/// The sequence tests train tiny models, where libtorch's intra-op threads (FFT above all) cost more in
/// wake-ups than they save, by 3–10× on a loaded 2-core machine; they run single-threaded and restore the
/// setting afterwards.
/// </summary>
[SetUpFixture]
public sealed class SequenceTestSetup
{
    private int _threads;

    [OneTimeSetUp]
    public void SingleThreaded()
    {
        _threads = get_num_threads();
        set_num_threads(1);
    }

    [OneTimeTearDown]
    public void Restore() => set_num_threads(_threads);
}
