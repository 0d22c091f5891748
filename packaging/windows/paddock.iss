; Inno Setup script: a per-user installer (no admin rights) with a Start menu entry.
; iscc /DAppVersion=0.1.0 packaging\windows\paddock.iss
#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif

[Setup]
AppId={{6E1B2B8E-5B0F-4C55-9A3E-7D0C2F4A9C11}
AppName=Paddock
AppVersion={#AppVersion}
AppPublisher=Paddock
DefaultDirName={localappdata}\Programs\Paddock
DefaultGroupName=Paddock
PrivilegesRequired=lowest
OutputDir=..\dist
OutputBaseFilename=Paddock-{#AppVersion}-windows-setup
Compression=lzma2
SolidCompression=yes
ArchitecturesInstallIn64BitMode=x64compatible
LicenseFile=..\..\LICENSE
SetupIconFile=..\build\icons\paddock.ico
UninstallDisplayIcon={app}\Paddock.exe

[Files]
Source: "..\dist\Paddock\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\Paddock"; Filename: "{app}\Paddock.exe"
Name: "{userdesktop}\Paddock"; Filename: "{app}\Paddock.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\Paddock.exe"; Description: "Start Paddock"; Flags: nowait postinstall skipifsilent
